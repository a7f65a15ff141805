package kube

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// NodeOf reads, from the API server itself (not the informers' cache),
// the Node that is m's by identity (scaler.SameWorker: vmid label and
// SMBIOS UUID), with the pods bound to it. nil when there is none.
func (c *Client) NodeOf(ctx context.Context, m scaler.Machine) (*scaler.Node, error) {
	list, err := c.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: scaler.LabelVMID + "=" + strconv.Itoa(m.VMID)})
	if err != nil {
		return nil, fmt.Errorf("read the Node of VM %d: %w", m.VMID, err)
	}
	for i := range list.Items {
		n := &list.Items[i]
		sn := scaler.Node{
			Name:        n.Name,
			Managed:     n.Labels[scaler.LabelManaged] == "true",
			SystemUUID:  normalUUID(n.Status.NodeInfo.SystemUUID),
			Ready:       ready(n),
			Created:     n.CreationTimestamp.Time,
			Annotations: n.Annotations,
		}
		sn.VMID, _ = strconv.Atoi(n.Labels[scaler.LabelVMID])
		if !scaler.SameWorker(m, sn) {
			continue
		}
		pods, err := c.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", n.Name).String()})
		if err != nil {
			return nil, fmt.Errorf("read the pods of Node %s: %w", n.Name, err)
		}
		for j := range pods.Items {
			p := &pods.Items[j]
			if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				continue
			}
			sn.Pods = append(sn.Pods, c.pod(p, requests(p), nil))
		}
		return &sn, nil
	}
	return nil, nil
}

// normalUUID is a UUID as compared across PVE, Kubernetes and Talos.
func normalUUID(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
