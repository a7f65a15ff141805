package kube

import (
	"context"
	"encoding/json"
	"time"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// LeaderOptions configures Lease-based leader election.
type LeaderOptions struct {
	Namespace, Name, Identity string
	// Lease, Renew and Retry are client-go's durations (defaults 15s, 10s, 2s).
	Lease, Renew, Retry time.Duration
	Log                 *zap.Logger
}

// RunLeader blocks, running lead while this process holds the Lease, until
// ctx ends. lead's context ends when leadership is lost. It returns when
// ctx ends or leadership is lost; the caller decides whether to try again.
func RunLeader(ctx context.Context, cs kubernetes.Interface, o LeaderOptions, lead func(context.Context)) error {
	if o.Lease == 0 {
		o.Lease, o.Renew, o.Retry = 15*time.Second, 10*time.Second, 2*time.Second
	}
	log := o.Log
	if log == nil {
		log = zap.NewNop()
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, LeaseDuration: o.Lease, RenewDeadline: o.Renew, RetryPeriod: o.Retry, ReleaseOnCancel: true, Name: o.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: lead,
			OnStoppedLeading: func() { log.Info("leadership lost or released", zap.String("identity", o.Identity)) },
			OnNewLeader: func(id string) {
				if id != o.Identity {
					log.Info("another daemon leads", zap.String("leader", id))
				}
			},
		},
	})
	if err != nil {
		return err
	}
	le.Run(ctx)
	return nil
}
