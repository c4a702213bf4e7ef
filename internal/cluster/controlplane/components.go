package controlplane

import (
	"github.com/berth/berth/internal/cluster/controller/cronjob"
	"github.com/berth/berth/internal/cluster/controller/daemonset"
	"github.com/berth/berth/internal/cluster/controller/deployment"
	"github.com/berth/berth/internal/cluster/controller/endpoints"
	"github.com/berth/berth/internal/cluster/controller/job"
	"github.com/berth/berth/internal/cluster/controller/localpath"
	"github.com/berth/berth/internal/cluster/controller/nodelifecycle"
	"github.com/berth/berth/internal/cluster/controller/podautoscaler"
	"github.com/berth/berth/internal/cluster/controller/replicaset"
	"github.com/berth/berth/internal/cluster/controller/statefulset"
	"github.com/berth/berth/internal/cluster/kube"
	"github.com/berth/berth/internal/cluster/scheduler"
)

// components are the control loops the leading server runs: the scheduler
// and the controllers. Each package exposes a constructor returning a
// kube.Component; list them here.
func components(o Options) []kube.Component {
	var c []kube.Component
	c = append(c, replicaset.Component())
	c = append(c, deployment.Component())
	c = append(c, daemonset.Component())
	c = append(c, statefulset.Component())
	c = append(c, job.Component())
	c = append(c, cronjob.Component())
	c = append(c, endpoints.Component())
	c = append(c, localpath.Component())
	c = append(c, podautoscaler.Component(podautoscaler.Options{SyncPeriod: o.HPASyncPeriod}))
	c = append(c, nodelifecycle.Component(nodelifecycle.Options{GracePeriod: o.NodeMonitorGracePeriod, StartupGracePeriod: o.NodeStartupGracePeriod, MonitorPeriod: o.NodeMonitorPeriod}))
	c = append(c, scheduler.Component(scheduler.Config{}))
	return c
}
