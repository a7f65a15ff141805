package kube

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	resourcehelper "k8s.io/component-helpers/resource"

	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// NodeOf reads, from the API server itself (not the informers' cache),
// the Node that is m's by identity (scaler.SameWorker: vmid label and
// SMBIOS UUID), with the pods bound to it; nil when there is none. It
// fails closed: without m's UUID it cannot tell, and a Node that shows m's
// UUID or m's name without being m's by identity (a label removed or
// changed, a name taken over) makes the answer ambiguous: an error, never
// "none".
func (c *Client) NodeOf(ctx context.Context, m scaler.Machine) (*scaler.Node, error) {
	if m.UUID == "" {
		return nil, fmt.Errorf("the Node of VM %d: its SMBIOS UUID is unknown, so no Node can be told to be or not be its", m.VMID)
	}
	list, err := c.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("read the Node of VM %d: %w", m.VMID, err)
	}
	var found *scaler.Node
	for i := range list.Items {
		n := &list.Items[i]
		sn := scaler.Node{
			Name:          n.Name,
			Managed:       n.Labels[scaler.LabelManaged] == "true",
			SystemUUID:    scaler.NormalUUID(n.Status.NodeInfo.SystemUUID),
			Ready:         ready(n),
			Created:       n.CreationTimestamp.Time,
			Annotations:   n.Annotations,
			Unschedulable: n.Spec.Unschedulable,
			Standby:       slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == scaler.TaintStandby }),
		}
		sn.VMID, _ = strconv.Atoi(n.Labels[scaler.LabelVMID])
		switch {
		case scaler.SameWorker(m, sn):
			found = &sn
		case strings.EqualFold(sn.SystemUUID, m.UUID) || n.Name == m.Name:
			return nil, fmt.Errorf("the Node of VM %d is ambiguous: Node %s (vmid label %q, SMBIOS UUID %s) shares its name or UUID without being its by identity",
				m.VMID, n.Name, n.Labels[scaler.LabelVMID], sn.SystemUUID)
		}
	}
	if found == nil {
		return nil, nil
	}
	pods, err := c.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", found.Name).String()})
	if err != nil {
		return nil, fmt.Errorf("read the pods of Node %s: %w", found.Name, err)
	}
	for j := range pods.Items {
		p := &pods.Items[j]
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		found.Pods = append(found.Pods, c.pod(p, resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{}), nil))
	}
	return found, nil
}
