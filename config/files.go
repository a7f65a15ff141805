package config

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"sync"
	"syscall"
)

// DaemonUser is the system user the Debian package runs the daemon as.
const DaemonUser = "pve-autoscaler"

// file checks a file the config names whose content steers the daemon
// (what it says does: so who can change it matters): it exists, is a
// regular file the checking user can open, is owned by root, the checking
// user or DaemonUser, and is writable by its owner only. why says what a
// writer would control. It returns the file's information when it exists
// and can be read (even with a problem reported), for secretFile.
func (v *validator) file(path, name, why string) (fs.FileInfo, bool) {
	if !v.opts.CheckFiles {
		return nil, false
	}
	st, err := os.Stat(name)
	switch {
	case err != nil:
		v.fail(path, "%s: %v", name, unwrapPathError(err))
		return nil, false
	case !st.Mode().IsRegular():
		v.fail(path, "%s: expected a regular file", name)
		return nil, false
	}
	f, err := os.Open(name)
	if err != nil {
		v.fail(path, "%s: %v", name, unwrapPathError(err))
		return nil, false
	}
	_ = f.Close()
	if uid, ok := ownerOf(st); ok && !trustedOwner(uid) {
		v.fail(path, "%s: owned by %s, who can change it, and it %s: expected root, %s or %s as owner (chown root:%s %s)",
			name, userName(uid), why, userName(uint32(os.Geteuid())), DaemonUser, DaemonUser, name)
	}
	if perm := st.Mode().Perm(); perm&0o022 != 0 {
		who := "its group"
		switch {
		case perm&0o022 == 0o002:
			who = "every user"
		case perm&0o022 == 0o022:
			who = "its group and every user"
		}
		v.fail(path, "%s: mode %04o lets %s write it, and it %s: expected write access for the owner only (chmod %04o %s)",
			name, perm, who, why, perm&^0o022, name)
	}
	return st, true
}

// secretFile is file for a file holding a secret, which other users must
// not read either. It reports whether the file was checked and had no
// problem.
func (v *validator) secretFile(path, name string) bool {
	before := len(v.problems)
	st, ok := v.file(path, name, "holds a secret the daemon uses")
	if !ok {
		return false
	}
	if perm := st.Mode().Perm(); perm&0o007 != 0 {
		v.fail(path, "%s: mode %04o gives every user access to this secret: expected no access for others (chmod %04o %s)",
			name, perm, perm&^0o027, name)
	}
	return len(v.problems) == before
}

// ownerOf returns the file's owner where the system says it.
func ownerOf(st fs.FileInfo) (uint32, bool) {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Uid, true
	}
	return 0, false
}

func trustedOwner(uid uint32) bool {
	if uid == 0 || uid == uint32(os.Geteuid()) {
		return true
	}
	d, ok := daemonUID()
	return ok && uid == d
}

var daemonUID = sync.OnceValues(func() (uint32, bool) {
	u, err := user.Lookup(DaemonUser)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	return uint32(n), err == nil
})

func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		return fmt.Sprintf("%s (uid %d)", u.Username, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}
