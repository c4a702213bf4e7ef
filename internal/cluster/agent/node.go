package agent

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth/berth/internal/cluster/kube"
)

// Version is what the node reports as its kubelet version.
const Version = "v1.32.0-berth"

const nodeStatusEvery = 10 * time.Second

// capacity is the node's resources: detected, or the overrides.
func (a *Agent) capacity() (corev1.ResourceList, error) {
	cpu := resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI)
	if a.o.CPUs != "" {
		q, err := resource.ParseQuantity(a.o.CPUs)
		if err != nil || q.Sign() <= 0 {
			return nil, fmt.Errorf("--cpus %q: want a CPU quantity such as 2 or 1500m", a.o.CPUs)
		}
		cpu = &q
	}
	mem := resource.NewQuantity(memTotal(), resource.BinarySI)
	if a.o.Memory != "" {
		q, err := resource.ParseQuantity(a.o.Memory)
		if err != nil || q.Sign() <= 0 {
			return nil, fmt.Errorf("--memory %q: want a memory quantity such as 4Gi", a.o.Memory)
		}
		mem = &q
	}
	disk, _ := diskFree(a.o.DataDir)
	return corev1.ResourceList{
		corev1.ResourceCPU:              *cpu,
		corev1.ResourceMemory:           *mem,
		corev1.ResourcePods:             *resource.NewQuantity(int64(a.o.MaxPods), resource.DecimalSI),
		corev1.ResourceEphemeralStorage: *resource.NewQuantity(disk.total, resource.BinarySI),
	}, nil
}

func memTotal() int64 {
	v, _ := meminfo()
	return v["MemTotal"]
}

// meminfo reads /proc/meminfo in bytes.
func meminfo() (map[string]int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fs[0], 10, 64)
		out[k] = n * 1024
	}
	return out, nil
}

type diskStat struct{ total, free int64 }

func diskFree(dir string) (diskStat, error) {
	for d := dir; d != ""; {
		var st syscall.Statfs_t
		if err := syscall.Statfs(d, &st); err == nil {
			return diskStat{total: int64(st.Blocks) * st.Bsize, free: int64(st.Bavail) * st.Bsize}, nil
		}
		if d == "/" {
			break
		}
		d = parentDir(d)
	}
	return diskStat{}, fmt.Errorf("statfs %s failed", dir)
}

func parentDir(d string) string {
	i := strings.LastIndex(strings.TrimSuffix(d, "/"), "/")
	if i <= 0 {
		return "/"
	}
	return d[:i]
}

func osImage() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "Linux"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}

func kernelVersion() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

// conditions are the node's health conditions now; engineErr (the
// engine not answering) makes the node not Ready.
func (a *Agent) conditions(old []corev1.NodeCondition, engineErr error) []corev1.NodeCondition {
	now := metav1.Now()
	mem, _ := meminfo()
	memPressure := mem["MemAvailable"] > 0 && mem["MemAvailable"] < 100<<20
	disk, err := diskFree(a.o.DataDir)
	diskPressure := err == nil && disk.total > 0 && disk.free*10 < disk.total
	mk := func(t corev1.NodeConditionType, bad bool, okReason, badReason, okMsg, badMsg string) corev1.NodeCondition {
		c := corev1.NodeCondition{Type: t, Status: corev1.ConditionFalse, Reason: okReason, Message: okMsg, LastHeartbeatTime: now, LastTransitionTime: now}
		if bad {
			c.Status, c.Reason, c.Message = corev1.ConditionTrue, badReason, badMsg
		}
		for _, o := range old {
			if o.Type == t && o.Status == c.Status {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		return c
	}
	ready := mk(corev1.NodeReady, engineErr == nil, "ContainerRuntimeUnhealthy", "KubeletReady", "", "berth agent is posting ready status")
	if engineErr != nil {
		ready.Message = fmt.Sprintf("the berth engine at %s does not answer: %v", a.o.Engine, engineErr)
	}
	return []corev1.NodeCondition{
		mk(corev1.NodeMemoryPressure, memPressure, "KubeletHasSufficientMemory", "KubeletHasInsufficientMemory", "agent has sufficient memory available", "agent has insufficient memory available"),
		mk(corev1.NodeDiskPressure, diskPressure, "KubeletHasNoDiskPressure", "KubeletHasDiskPressure", "agent has no disk pressure", "agent has disk pressure"),
		mk(corev1.NodePIDPressure, false, "KubeletHasSufficientPID", "", "agent has sufficient PID available", ""),
		ready,
	}
}

func (a *Agent) nodeLabels() map[string]string {
	l := map[string]string{
		corev1.LabelHostname:      a.node,
		corev1.LabelOSStable:      runtime.GOOS,
		corev1.LabelArchStable:    runtime.GOARCH,
		"beta.kubernetes.io/os":   runtime.GOOS,
		"beta.kubernetes.io/arch": runtime.GOARCH,
	}
	for k, v := range a.o.Labels {
		l[k] = v
	}
	return l
}

// nodeAnnotations tell the control plane what it needs of the node: where
// the local-path provisioner puts the node's volumes.
func (a *Agent) nodeAnnotations() map[string]string {
	return map[string]string{kube.AnnVolumesDir: a.o.VolumesDir}
}

// fillStatus sets everything of the node's status the agent reports.
func (a *Agent) fillStatus(n *corev1.Node, capacity corev1.ResourceList, engineVersion string, engineErr error) {
	n.Status.Capacity = capacity
	n.Status.Allocatable = capacity.DeepCopy()
	n.Status.Conditions = a.conditions(n.Status.Conditions, engineErr)
	if engineErr != nil && n.Status.NodeInfo.ContainerRuntimeVersion != "" {
		engineVersion = strings.TrimPrefix(n.Status.NodeInfo.ContainerRuntimeVersion, "berth://")
	}
	host, _ := os.Hostname()
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: a.hostIP}, {Type: corev1.NodeHostName, Address: host}}
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(a.o.StreamingPort)
	n.Status.NodeInfo = corev1.NodeSystemInfo{
		MachineID:               readTrim("/etc/machine-id"),
		BootID:                  readTrim("/proc/sys/kernel/random/boot_id"),
		KernelVersion:           kernelVersion(),
		OSImage:                 osImage(),
		ContainerRuntimeVersion: "berth://" + engineVersion,
		KubeletVersion:          Version,
		KubeProxyVersion:        "",
		OperatingSystem:         runtime.GOOS,
		Architecture:            runtime.GOARCH,
	}
}

func readTrim(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

// registerNode creates the Node, or updates the one a previous run left
// (labels and status; taints are only set at creation, as the kubelet).
func (a *Agent) registerNode(ctx context.Context) error {
	capacity, err := a.capacity()
	if err != nil {
		return err
	}
	ver, verr := a.eng.Version(ctx)
	nodes := a.cs.CoreV1().Nodes()
	for attempt := 0; ; attempt++ {
		n, err := nodes.Get(ctx, a.node, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			n = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: a.node, Labels: a.nodeLabels(), Annotations: a.nodeAnnotations()}, Spec: corev1.NodeSpec{Taints: a.o.Taints}}
			created, err := nodes.Create(ctx, n, metav1.CreateOptions{})
			if err == nil {
				a.fillStatus(created, capacity, ver, verr)
				if _, err = nodes.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err == nil {
					a.log.Info("node registered", "cpu", capacity.Cpu().String(), "memory", capacity.Memory().String(), "pods", a.o.MaxPods)
					return nil
				}
			}
			if apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) {
				continue
			}
			if attempt < 30 && ctx.Err() == nil {
				a.log.Warn("registering the node; retrying", "err", err)
				time.Sleep(time.Second)
				continue
			}
			return fmt.Errorf("registering node %s: %w", a.node, err)
		}
		if err != nil {
			if attempt < 30 && ctx.Err() == nil {
				a.log.Warn("reading the node; retrying", "err", err)
				time.Sleep(time.Second)
				continue
			}
			return fmt.Errorf("reading node %s: %w", a.node, err)
		}
		n = n.DeepCopy()
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		for k, v := range a.nodeLabels() {
			n.Labels[k] = v
		}
		if n.Annotations == nil {
			n.Annotations = map[string]string{}
		}
		for k, v := range a.nodeAnnotations() {
			n.Annotations[k] = v
		}
		if n, err = nodes.Update(ctx, n, metav1.UpdateOptions{}); apierrors.IsConflict(err) {
			continue
		} else if err != nil {
			return fmt.Errorf("updating node %s: %w", a.node, err)
		}
		a.fillStatus(n, capacity, ver, verr)
		if _, err := nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{}); apierrors.IsConflict(err) {
			continue
		} else if err != nil {
			return fmt.Errorf("updating node %s status: %w", a.node, err)
		}
		a.log.Info("node re-registered", "cpu", capacity.Cpu().String(), "memory", capacity.Memory().String(), "pods", a.o.MaxPods)
		return nil
	}
}

// nodeStatusLoop posts the node's conditions every 10 s.
func (a *Agent) nodeStatusLoop(ctx context.Context) {
	t := time.NewTicker(nodeStatusEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.nodeKick:
		}
		if err := a.updateNodeStatus(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("updating node status", "err", err)
		}
	}
}

func (a *Agent) updateNodeStatus(ctx context.Context) error {
	capacity, err := a.capacity()
	if err != nil {
		return err
	}
	vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	ver, verr := a.eng.Version(vctx)
	cancel()
	n, err := a.cs.CoreV1().Nodes().Get(ctx, a.node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		// Deleted by someone: register again, as the kubelet does.
		return a.registerNode(ctx)
	}
	if err != nil {
		return err
	}
	n = n.DeepCopy()
	a.fillStatus(n, capacity, ver, verr)
	_, err = a.cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	return err
}

// leaseLoop renews the node's Lease in kube-node-lease every quarter of
// its duration; the node lifecycle controller watches it.
func (a *Agent) leaseLoop(ctx context.Context) {
	every := a.o.LeaseDuration / 4
	if every < 200*time.Millisecond {
		every = 200 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var cur *coordv1.Lease
	failing := 0
	for {
		var err error
		cur, err = a.renewLease(ctx, cur)
		switch {
		case err != nil && ctx.Err() == nil:
			// Once, then every minute: a partitioned node would log every
			// second otherwise.
			if failing%int(time.Minute/every) == 0 {
				a.log.Warn("renewing the node lease", "failures", failing+1, "err", err)
			}
			failing++
		case err == nil && failing > 0:
			a.log.Info("node lease renewed again; posting node status", "after-failures", failing)
			failing = 0
			// The node lifecycle controller set Ready=Unknown meanwhile:
			// say Ready again now, not at the next 10 s tick.
			select {
			case a.nodeKick <- struct{}{}:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) renewLease(ctx context.Context, cur *coordv1.Lease) (*coordv1.Lease, error) {
	leases := a.cs.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	secs := int32((a.o.LeaseDuration + time.Second - 1) / time.Second)
	now := metav1.NewMicroTime(time.Now())
	if cur == nil {
		l, err := leases.Get(ctx, a.node, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			l = &coordv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: a.node, Namespace: corev1.NamespaceNodeLease}}
			if n, err := a.cs.CoreV1().Nodes().Get(ctx, a.node, metav1.GetOptions{}); err == nil {
				l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID}}
			}
			l.Spec = coordv1.LeaseSpec{HolderIdentity: &a.node, LeaseDurationSeconds: &secs, RenewTime: &now}
			return leases.Create(ctx, l, metav1.CreateOptions{})
		}
		if err != nil {
			return nil, err
		}
		cur = l
	}
	l := cur.DeepCopy()
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &a.node, &secs, &now
	out, err := leases.Update(ctx, l, metav1.UpdateOptions{})
	if err != nil {
		return nil, err // read it again next time
	}
	return out, nil
}
