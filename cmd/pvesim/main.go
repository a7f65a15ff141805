// Command pvesim runs the Proxmox VE API simulator on loopback, so that
// pve-autoscaler (or anything speaking the PVE API) can be tried without a
// Proxmox host:
//
//	pvesim --listen 127.0.0.1:8006 [--world world.yaml] [--speed 10]
//
// Without --world it serves the default world: hosts pve1..pve3 (32 cores,
// 64 GiB each), shared storage holding the Talos template 9000
// (talos-worker-template), and the API token autoscaler@pve!scaler, whose
// secret it prints at start with the certificate's fingerprint.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/pve-autoscaler/pve-autoscaler/config"
	"github.com/pve-autoscaler/pve-autoscaler/internal/strictjson"
	"github.com/pve-autoscaler/pve-autoscaler/proxmox/pvesim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pvesim:", err)
		os.Exit(2)
	}
}

// worldFile is the YAML form of a world: sizes and durations as text.
type worldFile struct {
	Hosts []struct {
		Name    string          `json:"name"`
		Cores   int             `json:"cores"`
		Memory  config.ByteSize `json:"memory"`
		Offline bool            `json:"offline"`
	} `json:"hosts"`
	Storages []struct {
		Name   string          `json:"name"`
		Shared bool            `json:"shared"`
		Size   config.ByteSize `json:"size"`
	} `json:"storages"`
	Templates []vmFile           `json:"templates"`
	VMs       []vmFile           `json:"vms"`
	Tokens    []pvesim.TokenSpec `json:"tokens"`
	Users     []pvesim.UserSpec  `json:"users"`
	Latencies struct {
		LinkedClone        *config.Duration `json:"linked_clone"`
		FullCloneBandwidth *config.ByteSize `json:"full_clone_bandwidth_per_second"`
		Start              *config.Duration `json:"start"`
		Stop               *config.Duration `json:"stop"`
		Shutdown           *config.Duration `json:"shutdown"`
		Destroy            *config.Duration `json:"destroy"`
		Config             *config.Duration `json:"config"`
		Agent              *config.Duration `json:"agent"`
		AuthFailure        *config.Duration `json:"auth_failure"`
		StorageLock        *config.Duration `json:"storage_lock"`
	} `json:"latencies"`
	IPPool  string              `json:"ip_pool"`
	Version string              `json:"version"`
	Roles   map[string][]string `json:"roles"`
	ACL     []pvesim.ACLSpec    `json:"acl"`
	Pools   []pvesim.PoolSpec   `json:"pools"`
}

type vmFile struct {
	VMID     int             `json:"vmid"`
	Name     string          `json:"name"`
	Host     string          `json:"host"`
	Storage  string          `json:"storage"`
	Cores    int             `json:"cores"`
	Memory   config.ByteSize `json:"memory"`
	Disk     config.ByteSize `json:"disk"`
	Agent    bool            `json:"agent"`
	Template bool            `json:"template"`
	Running  bool            `json:"running"`
	Tags     string          `json:"tags"`
	UUID     string          `json:"uuid"`
}

func loadWorld(path string) (pvesim.World, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return pvesim.World{}, fmt.Errorf("world %w", err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return pvesim.World{}, fmt.Errorf("world %s: not valid YAML: %w", path, err)
	}
	var f worldFile
	if errs := strictjson.Decode(js, &f); len(errs) > 0 {
		return pvesim.World{}, fmt.Errorf("world %s: %w", path, strictjson.Join(errs))
	}
	w := pvesim.World{Tokens: f.Tokens, Users: f.Users, IPPool: f.IPPool, Version: f.Version, Latencies: pvesim.DefaultLatencies(),
		Roles: f.Roles, ACL: f.ACL, Pools: f.Pools}
	for _, h := range f.Hosts {
		w.Hosts = append(w.Hosts, pvesim.HostSpec{Name: h.Name, Cores: h.Cores, Memory: int64(h.Memory), Offline: h.Offline})
	}
	for _, s := range f.Storages {
		w.Storages = append(w.Storages, pvesim.StorageSpec{Name: s.Name, Shared: s.Shared, Size: int64(s.Size)})
	}
	conv := func(list []vmFile) (out []pvesim.VMSpec) {
		for _, v := range list {
			out = append(out, pvesim.VMSpec{VMID: v.VMID, Name: v.Name, Host: v.Host, Storage: v.Storage, Cores: v.Cores,
				Memory: int64(v.Memory) >> 20, Disk: int64(v.Disk), Agent: v.Agent, Template: v.Template, Running: v.Running, Tags: v.Tags,
				UUID: v.UUID})
		}
		return out
	}
	w.Templates, w.VMs = conv(f.Templates), conv(f.VMs)
	l := &w.Latencies
	for _, d := range []struct {
		from *config.Duration
		to   *time.Duration
	}{{f.Latencies.LinkedClone, &l.LinkedClone}, {f.Latencies.Start, &l.Start}, {f.Latencies.Stop, &l.Stop}, {f.Latencies.Shutdown, &l.Shutdown},
		{f.Latencies.Destroy, &l.Destroy}, {f.Latencies.Config, &l.Config}, {f.Latencies.Agent, &l.Agent}, {f.Latencies.AuthFailure, &l.AuthFailure},
		{f.Latencies.StorageLock, &l.StorageLock}} {
		if d.from != nil {
			*d.to = d.from.D()
		}
	}
	if f.Latencies.FullCloneBandwidth != nil {
		l.FullCloneBandwidth = int64(*f.Latencies.FullCloneBandwidth)
	}
	if len(w.Tokens) == 0 {
		return w, fmt.Errorf("world %s: tokens: at least one API token is needed", path)
	}
	return w, nil
}

const usageText = `Usage: pvesim [--listen ADDR] [--world FILE] [--speed N]

Serves a simulated Proxmox VE API on loopback.

Examples:
  # the built-in world (hosts pve1..pve3, template 9000) on the PVE port
  pvesim --listen 127.0.0.1:8006
  # your own hosts and templates, with latencies 10 times faster
  pvesim --world world.yaml --speed 10

Flags:
`

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := pflag.NewFlagSet("pvesim", pflag.ContinueOnError)
	fs.SetOutput(out)
	listen := fs.String("listen", "127.0.0.1:8006", "loopback address to serve the API on")
	worldPath := fs.String("world", "", "world file (YAML): hosts, storages, templates, vms, tokens, users, latencies (default: built-in world)")
	speed := fs.Float64("speed", 1, "simulated seconds per real second (latencies run this much faster)")
	fs.Usage = func() { fmt.Fprint(out, usageText+fs.FlagUsages()) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil // pflag printed the usage
		}
		return err
	}
	if *speed <= 0 {
		return fmt.Errorf("--speed %g: expected more than 0", *speed)
	}
	var w pvesim.World
	if *worldPath != "" {
		var err error
		if w, err = loadWorld(*worldPath); err != nil {
			return err
		}
	} else {
		w = pvesim.DefaultWorld("")
	}
	for i := range w.Tokens {
		if w.Tokens[i].Secret == "" {
			w.Tokens[i].Secret = pvesim.NewUUID() // as PVE generates them
		}
	}
	sim, err := pvesim.New(w, pvesim.NewScaledClock(*speed))
	if err != nil {
		return err
	}
	srv, err := sim.Serve(*listen)
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Fprintf(out, "pvesim: serving the PVE API at %s (speed %gx)\n", srv.URL, *speed)
	fmt.Fprintf(out, "pvesim: certificate fingerprint %s (proxmox.tls.fingerprint)\n", srv.Fingerprint)
	for _, t := range w.Tokens {
		fmt.Fprintf(out, "pvesim: API token %s secret %s\n", t.ID, t.Secret)
	}
	<-ctx.Done()
	fmt.Fprintln(out, "pvesim: stopped")
	return nil
}
