package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

// ControlRef names the ConfigMap holding the operator's pause and boosts
// (daemon.control): one object in the daemon's namespace, so a pause set
// from any machine holds for every daemon, across restarts.
type ControlRef struct {
	Namespace, Name string
}

// Keys of the control ConfigMap's data, each a JSON document.
const (
	ControlKeyPause  = "pause"  // scaler.Pause
	ControlKeyBoosts = "boosts" // []scaler.Boost
)

// ReadControl reads the control ConfigMap with one GET. No ConfigMap is
// no pause and no boost; one that cannot be read or decoded is an error
// (the caller decides nothing on it: a pause it cannot see may hold).
func (c *Client) ReadControl(ctx context.Context, ref ControlRef) (*scaler.Control, error) {
	cm, err := c.cs.CoreV1().ConfigMaps(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case apierrors.IsForbidden(err):
		return nil, &PermissionError{What: fmt.Sprintf("read the control ConfigMap %s/%s (daemon.control: pause and boosts)", ref.Namespace, ref.Name), Err: err}
	case err != nil:
		return nil, fmt.Errorf("kubernetes: read the control ConfigMap %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	return decodeControl(ref, cm)
}

func decodeControl(ref ControlRef, cm *corev1.ConfigMap) (*scaler.Control, error) {
	var ctl scaler.Control
	if s := cm.Data[ControlKeyPause]; s != "" {
		var p scaler.Pause
		if err := json.Unmarshal([]byte(s), &p); err != nil {
			return nil, fmt.Errorf("control ConfigMap %s/%s, key %s: %v (pve-autoscaler resume rewrites it)", ref.Namespace, ref.Name, ControlKeyPause, err)
		}
		ctl.Pause = &p
	}
	if s := cm.Data[ControlKeyBoosts]; s != "" {
		if err := json.Unmarshal([]byte(s), &ctl.Boosts); err != nil {
			return nil, fmt.Errorf("control ConfigMap %s/%s, key %s: %v (pve-autoscaler boost --clear rewrites it)", ref.Namespace, ref.Name, ControlKeyBoosts, err)
		}
	}
	return &ctl, nil
}

// UpdateControl reads the control ConfigMap, lets change edit what it
// holds, and writes it back: created when missing, deleted when nothing
// is left in it, each write conditional on the object read (a conflict
// reads again). It returns what the ConfigMap holds now.
func (c *Client) UpdateControl(ctx context.Context, ref ControlRef, change func(*scaler.Control)) (*scaler.Control, error) {
	cms := c.cs.CoreV1().ConfigMaps(ref.Namespace)
	for attempt := 0; ; attempt++ {
		cm, err := cms.Get(ctx, ref.Name, metav1.GetOptions{})
		exists := err == nil
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("read the control ConfigMap %s/%s: %w", ref.Namespace, ref.Name, err)
		}
		ctl := &scaler.Control{}
		if exists {
			if ctl, err = decodeControl(ref, cm); err != nil {
				// Unreadable: written afresh by this change.
				ctl = &scaler.Control{}
			}
		}
		change(ctl)
		data, err := encodeControl(ctl)
		if err != nil {
			return nil, err
		}
		switch {
		case !exists && len(data) == 0:
			return ctl, nil
		case !exists:
			cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ref.Name, Namespace: ref.Namespace,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "pve-autoscaler"}}, Data: data}
			_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
		case len(data) == 0:
			rv := cm.ResourceVersion
			err = cms.Delete(ctx, ref.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
			if apierrors.IsNotFound(err) {
				err = nil
			}
		default:
			cm.Data = data
			_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		}
		if (apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)) && attempt < 5 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("write the control ConfigMap %s/%s: %w", ref.Namespace, ref.Name, err)
		}
		return ctl, nil
	}
}

func encodeControl(ctl *scaler.Control) (map[string]string, error) {
	data := map[string]string{}
	if ctl.Pause != nil {
		b, err := json.Marshal(ctl.Pause)
		if err != nil {
			return nil, err
		}
		data[ControlKeyPause] = string(b)
	}
	if len(ctl.Boosts) > 0 {
		b, err := json.Marshal(ctl.Boosts)
		if err != nil {
			return nil, err
		}
		data[ControlKeyBoosts] = string(b)
	}
	if len(data) == 0 {
		return nil, nil
	}
	return data, nil
}

// SetBoost puts b in ctl, in place of a boost of the same pool.
func SetBoost(ctl *scaler.Control, b scaler.Boost) {
	ctl.Boosts = slices.DeleteFunc(ctl.Boosts, func(o scaler.Boost) bool { return o.Pool == b.Pool })
	ctl.Boosts = append(ctl.Boosts, b)
}

// Who says who these credentials are, as the API server knows them
// (SelfSubjectReview), and the host asking: "alice@pve1". When the API
// server cannot say, the host alone.
func (c *Client) Who(ctx context.Context) string {
	host, _ := os.Hostname()
	if host == "" {
		host = "unknown host"
	}
	r, err := c.cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil || r.Status.UserInfo.Username == "" {
		return host
	}
	return r.Status.UserInfo.Username + "@" + host
}
