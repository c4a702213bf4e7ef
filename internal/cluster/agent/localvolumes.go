package agent

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/berth/berth/internal/cluster/agent/volumes"
)

// clientClaims reads claims and volumes through the API server. Claims
// are readable one by one for the pods bound to this node (the API
// server's node authorizer); volumes are cluster-wide and readable.
type clientClaims struct{ cs kubernetes.Interface }

var _ volumes.Claims = clientClaims{}

func (c clientClaims) PersistentVolumeClaim(ctx context.Context, ns, name string) (*corev1.PersistentVolumeClaim, error) {
	return c.cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
}

func (c clientClaims) PersistentVolume(ctx context.Context, name string) (*corev1.PersistentVolume, error) {
	return c.cs.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
}

// reapEvery is how often the agent looks for local-path volumes whose
// object is gone, besides when it sees one deleted.
const reapEvery = 30 * time.Second

// reapVolumes removes the directories of the local-path volumes this
// agent created once their PersistentVolume is deleted (the provisioner
// deletes the volumes of reclaim policy Delete when their claim goes).
// Only the API server's word counts: a directory is removed when a GET
// of its volume answers NotFound, never because a cache lacks it. The
// volumes manager refuses directories still used by a pod or with
// anything mounted below.
func (a *Agent) reapVolumes(ctx context.Context) {
	f := informers.NewSharedInformerFactory(a.cs, 0)
	pvInf := f.Core().V1().PersistentVolumes().Informer()
	_, _ = pvInf.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(any) { a.kickReaper() }})
	f.Start(ctx.Done())
	defer f.Shutdown()
	for {
		wait := reapEvery
		if !a.reapOnce(ctx) {
			// Typically the last pod of the volume is still being torn
			// down: try again soon.
			wait = 2 * time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		case <-a.reapKick:
		}
	}
}

// kickReaper asks for a look at the deleted volumes now (a volume was
// deleted, or a pod that may have used one was torn down).
func (a *Agent) kickReaper() {
	select {
	case a.reapKick <- struct{}{}:
	default:
	}
}

// reapOnce removes what it can; false when a removal must be retried.
func (a *Agent) reapOnce(ctx context.Context) bool {
	names, err := a.vols.LocalVolumes()
	if err != nil {
		a.log.Warn("listing local volumes", "err", err)
		return false
	}
	done := true
	for _, name := range names {
		_, err := a.cs.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			continue // exists, or unknown: keep
		}
		if err := a.vols.RemoveLocalVolume(name); err != nil {
			a.log.Info("the directory of a deleted volume stays for now", "pv", name, "err", err)
			done = false
			continue
		}
		a.log.Info("removed the directory of a deleted volume", "pv", name, "dir", a.o.VolumesDir)
	}
	return done
}
