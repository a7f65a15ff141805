//go:build tools

// Package deps pins the client libraries that the adapters (proxmox/, talos/,
// kube/) are built on, so that go.mod holds one checked set of versions
// (../shared/docs/GO-DEPS.md) before every adapter imports them. The build
// tag keeps this file out of every build; go mod tidy still sees it.
package deps

import (
	_ "github.com/luthermonson/go-proxmox"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/siderolabs/talos/pkg/machinery/client"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/kubectl/pkg/drain"
	_ "k8s.io/metrics/pkg/client/clientset/versioned"
)
