package apiserver

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Node ports come from Kubernetes' default range, one etcd key per port
// holding "namespace/name" of the Service that owns it, like cluster IPs
// (ipalloc.go).
const (
	nodePortMin       = 30000
	nodePortMax       = 32767
	nodePortKeyPrefix = "/registry/ranges/servicenodeports/"
)

func wantsNodePorts(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer
}

// allocateNodePorts gives every port of a NodePort or LoadBalancer
// Service a node port: the requested one if it is in the range and free,
// else a random free one. keep holds the ports the Service already owns
// (an update), which it may keep. It returns the ports it reserved, for
// release if the write fails.
func (s *Server) allocateNodePorts(ctx context.Context, svc *corev1.Service, keep map[int32]bool) ([]int32, error) {
	if !wantsNodePorts(svc) {
		return nil, nil
	}
	r := lookup("", "v1", "services")
	owner := svc.Namespace + "/" + svc.Name
	var reserved []int32
	fail := func(err error) ([]int32, error) {
		s.releaseNodePorts(ctx, svc.Namespace, svc.Name, reserved)
		return nil, err
	}
	reserve := func(p int32) (bool, error) {
		key := nodePortKeyPrefix + strconv.Itoa(int(p))
		resp, err := s.cfg.Client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(clientv3.OpPut(key, owner)).Commit()
		if err != nil {
			return false, unavailable(err)
		}
		return resp.Succeeded, nil
	}
	used := map[int32]bool{}
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if p.NodePort == 0 {
			continue
		}
		field := fmt.Sprintf("spec.ports[%d].nodePort", i)
		if p.NodePort < nodePortMin || p.NodePort > nodePortMax {
			return fail(errInvalid(r, svc.Name, []fieldErr{invalid(field, p.NodePort, fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %d-%d", nodePortMin, nodePortMax))}))
		}
		if used[p.NodePort] {
			// The same node port for TCP and UDP of one port number is fine.
			continue
		}
		used[p.NodePort] = true
		if keep[p.NodePort] {
			continue
		}
		ok, err := reserve(p.NodePort)
		if err != nil {
			return fail(err)
		}
		if !ok {
			return fail(errInvalid(r, svc.Name, []fieldErr{invalid(field, p.NodePort, "provided port is already allocated")}))
		}
		reserved = append(reserved, p.NodePort)
	}
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if p.NodePort != 0 {
			continue
		}
		for attempt := 0; attempt < 128 && p.NodePort == 0; attempt++ {
			var b [4]byte
			_, _ = rand.Read(b[:])
			cand := int32(nodePortMin + binary.BigEndian.Uint32(b[:])%(nodePortMax-nodePortMin+1))
			if used[cand] {
				continue
			}
			ok, err := reserve(cand)
			if err != nil {
				return fail(err)
			}
			if ok {
				p.NodePort = cand
				used[cand] = true
				reserved = append(reserved, cand)
			}
		}
		if p.NodePort == 0 {
			return fail(newStatus(500, metav1.StatusReasonInternalError, nil, fmt.Sprintf("no free node port found in %d-%d", nodePortMin, nodePortMax)))
		}
	}
	return reserved, nil
}

// releaseNodePorts frees ports that still belong to the Service ns/name.
func (s *Server) releaseNodePorts(ctx context.Context, ns, name string, ports []int32) {
	for _, p := range ports {
		key := nodePortKeyPrefix + strconv.Itoa(int(p))
		_, _ = s.cfg.Client.Txn(ctx).If(clientv3.Compare(clientv3.Value(key), "=", ns+"/"+name)).Then(clientv3.OpDelete(key)).Commit()
	}
}

// nodePortsOf lists a Service's node ports.
func nodePortsOf(svc *corev1.Service) []int32 {
	var out []int32
	for _, p := range svc.Spec.Ports {
		if p.NodePort != 0 {
			out = append(out, p.NodePort)
		}
	}
	return out
}

// carryNodePorts keeps, on an update, the node port a port had when the
// new spec leaves it out (matched by port number and protocol, as
// kubectl apply of the original manifest does), and returns the ports the
// old Service owned.
func carryNodePorts(old, svc *corev1.Service) map[int32]bool {
	owned := map[int32]bool{}
	for _, p := range old.Spec.Ports {
		if p.NodePort != 0 {
			owned[p.NodePort] = true
		}
	}
	if !wantsNodePorts(svc) {
		return owned
	}
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if p.NodePort != 0 {
			continue
		}
		for _, o := range old.Spec.Ports {
			if o.NodePort != 0 && o.Port == p.Port && o.Protocol == p.Protocol {
				p.NodePort = o.NodePort
				break
			}
		}
	}
	return owned
}
