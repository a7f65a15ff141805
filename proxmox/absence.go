package proxmox

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"
)

// Gone reads one VM directly on every online host (not the cluster's
// resource list) and reports true only when each answers PVE's
// "Configuration file ... does not exist". A host offline, any other
// error or any answer that shows the VM makes it false: absence must be
// proven, never inferred from a list that lacks the VM.
func (c *Client) Gone(ctx context.Context, vmid int) (bool, error) {
	inv, err := c.Inventory(ctx)
	if err != nil {
		return false, err
	}
	if len(inv.Hosts) == 0 {
		return false, errors.New("no PVE host listed: cannot tell whether the VM exists")
	}
	for _, h := range inv.Hosts {
		if !h.Online {
			return false, fmt.Errorf("host %s is offline: VM %d may be there", h.Name, vmid)
		}
		var cur struct {
			Status string `json:"status"`
		}
		err := apiErr(c.api.Get(ctx, fmt.Sprintf("/nodes/%s/qemu/%d/status/current", h.Name, vmid), &cur))
		switch {
		case err == nil:
			return false, nil
		case strings.Contains(err.Error(), "does not exist"):
		default:
			return false, fmt.Errorf("read VM %d on %s: %w", vmid, h.Name, err)
		}
	}
	return true, nil
}

// Sane checks that the VM list can be trusted to show what is missing:
// the template is visible to the token, and the token still holds
// VM.Audit (without it PVE leaves VMs out of the list).
func (c *Client) Sane(ctx context.Context) error {
	inv, err := c.Inventory(ctx)
	if err != nil {
		return err
	}
	if why := inv.Ambiguous[c.pools[0].Name]; why != "" {
		return errors.New(why)
	}
	if inv.Template == nil {
		return fmt.Errorf("the template %s is not in the VM list: the token may have lost VM.Audit, or proxmox.url names another PVE cluster", c.templateName())
	}
	path := VMPath(c.cfg)
	privs, err := c.PermissionsOn(ctx, path)
	if err != nil {
		return fmt.Errorf("read the token's privileges on %s: %w", path, err)
	}
	if !privs["VM.Audit"] {
		return fmt.Errorf("the token no longer holds VM.Audit on %s: the VM list may leave VMs out", path)
	}
	return nil
}

func (c *Client) templateName() string {
	if t := c.cfg.Template; t.ID != 0 {
		return fmt.Sprintf("%d", t.ID)
	}
	return fmt.Sprintf("%q", c.cfg.Template.Name)
}

// Log is the adapter's logger.
func (c *Client) Log() *zap.Logger { return c.log }
