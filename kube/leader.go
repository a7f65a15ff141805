package kube

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/pve-autoscaler/pve-autoscaler/scaler"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// LeaderOptions configures Lease-based leader election.
type LeaderOptions struct {
	Namespace, Name, Identity string
	// Lease, Renew and Retry are client-go's durations (defaults 15s, 10s, 2s).
	Lease, Renew, Retry time.Duration
	Log                 *zap.Logger
	// OnLost, if set, is called as soon as leadership is lost while lead
	// runs, also during the grace after ctx ended (when lead's context is
	// done already): another daemon may lead within seconds, so the
	// caller stops its operations at once (the daemon: Reconciler.Abort).
	OnLost func()
}

// RunLeader blocks, running lead while this process holds the Lease, until
// ctx ends. lead's context ends when ctx ends or leadership is lost. When
// ctx ends, the Lease is held (and renewed) until lead has returned, so a
// leader that lets its running steps finish (the reconciler's grace) is
// never joined by a second one meanwhile; then it is released. RunLeader
// returns when ctx ends or leadership is lost; the caller decides whether
// to try again.
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
	// The elector runs on a context of its own, ended only once lead has
	// returned (or, not leading, as soon as ctx ends).
	elect, stopElecting := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElecting()
	var mu sync.Mutex
	leading := false
	done := make(chan struct{})
	ledDone := make(chan struct{}) // closed when lead has returned
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !leading {
			stopElecting()
		}
	}()
	defer close(done)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, LeaseDuration: o.Lease, RenewDeadline: o.Renew, RetryPeriod: o.Retry, ReleaseOnCancel: true, Name: o.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				mu.Lock()
				if ctx.Err() != nil {
					mu.Unlock()
					stopElecting()
					return
				}
				leading = true
				mu.Unlock()
				// lead stops when ctx ends (with its grace) or leadership is
				// lost: then at once (cause scaler.ErrLeadershipLost), since
				// another daemon may lead within seconds.
				run, cancel := context.WithCancelCause(context.WithoutCancel(lctx))
				stopOnCtx := context.AfterFunc(ctx, func() { cancel(ctx.Err()) })
				stopOnLoss := context.AfterFunc(lctx, func() {
					log.Warn("leadership lost while leading: operations stop at once", zap.String("identity", o.Identity))
					if ctx.Err() == nil {
						cancel(scaler.ErrLeadershipLost)
					}
					if o.OnLost != nil {
						o.OnLost()
					}
				})
				lead(run)
				stopOnCtx()
				stopOnLoss()
				cancel(nil)
				close(ledDone)
				log.Info("releasing the lease", zap.String("identity", o.Identity))
				stopElecting()
			},
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
	le.Run(elect)
	mu.Lock()
	led := leading
	mu.Unlock()
	if led {
		<-ledDone // leadership lost: lead's steps end (they were told) before this returns
	}
	return nil
}
