package apiserver

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultServiceCIDR is the range service cluster IPs come from.
const DefaultServiceCIDR = "10.43.0.0/16"

const ipKeyPrefix = "/registry/ranges/serviceips/"

// allocateClusterIP reserves svc's cluster IP (the requested one, or a
// random free one) with an etcd transaction keyed by the address, and
// fills spec.clusterIP(s) and the IP family fields.
func (s *Server) allocateClusterIP(ctx context.Context, svc *corev1.Service) error {
	if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		if svc.Spec.ClusterIP == corev1.ClusterIPNone {
			svc.Spec.ClusterIPs = []string{corev1.ClusterIPNone}
		}
		return nil
	}
	r := lookup("", "v1", "services")
	owner := svc.Namespace + "/" + svc.Name
	prefix := s.serviceCIDR
	reserve := func(ip netip.Addr) (bool, error) {
		key := ipKeyPrefix + ip.String()
		resp, err := s.cfg.Client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(clientv3.OpPut(key, owner)).Commit()
		if err != nil {
			return false, unavailable(err)
		}
		return resp.Succeeded, nil
	}
	var ip netip.Addr
	if want := svc.Spec.ClusterIP; want != "" {
		a, err := netip.ParseAddr(want)
		if err != nil || !prefix.Contains(a) {
			return errInvalid(r, svc.Name, []fieldErr{invalid("spec.clusterIP", want, fmt.Sprintf("must be an IP address in the service range %s", prefix))})
		}
		ok, err := reserve(a)
		if err != nil {
			return err
		}
		if !ok {
			return errInvalid(r, svc.Name, []fieldErr{invalid("spec.clusterIP", want, "provided IP is already allocated")})
		}
		ip = a
	} else {
		base := prefix.Masked().Addr().As4()
		size := uint32(1) << (32 - prefix.Bits())
		for attempt := 0; attempt < 64 && !ip.IsValid(); attempt++ {
			var b [4]byte
			_, _ = rand.Read(b[:])
			off := binary.BigEndian.Uint32(b[:])%(size-3) + 2 // skip network, .1 (reserved) and broadcast
			n := binary.BigEndian.Uint32(base[:]) + off
			var cand [4]byte
			binary.BigEndian.PutUint32(cand[:], n)
			a := netip.AddrFrom4(cand)
			ok, err := reserve(a)
			if err != nil {
				return err
			}
			if ok {
				ip = a
			}
		}
		if !ip.IsValid() {
			return newStatus(500, metav1.StatusReasonInternalError, nil, fmt.Sprintf("no free cluster IP found in %s", prefix))
		}
	}
	svc.Spec.ClusterIP = ip.String()
	svc.Spec.ClusterIPs = []string{ip.String()}
	single := corev1.IPFamilyPolicySingleStack
	svc.Spec.IPFamilyPolicy = &single
	svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	return nil
}

// releaseClusterIP frees the address of a deleted service, if it still
// belongs to that service.
func (s *Server) releaseClusterIP(ctx context.Context, ns, name, ip string) {
	if ip == "" || ip == corev1.ClusterIPNone {
		return
	}
	key := ipKeyPrefix + ip
	_, _ = s.cfg.Client.Txn(ctx).If(clientv3.Compare(clientv3.Value(key), "=", ns+"/"+name)).Then(clientv3.OpDelete(key)).Commit()
}
