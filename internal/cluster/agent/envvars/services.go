package envvars

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ServiceEnv returns the service-link variables the kubelet gives a pod
// in namespace ns: for each service with a cluster IP, NAME_SERVICE_HOST,
// NAME_SERVICE_PORT (first port), NAME_SERVICE_PORT_<PORTNAME> and the
// Docker-link NAME_PORT… variables. Services of the pod's namespace
// count only with enableServiceLinks (the pod's spec.enableServiceLinks,
// default true); the "kubernetes" service of the "default" namespace
// always counts, so in-cluster clients find the API server.
func ServiceEnv(services []*corev1.Service, ns string, enableServiceLinks bool) map[string]string {
	chosen := map[string]*corev1.Service{}
	for _, s := range services {
		if s.Spec.ClusterIP == "" || s.Spec.ClusterIP == corev1.ClusterIPNone {
			continue
		}
		switch {
		case s.Namespace == metav1.NamespaceDefault && s.Name == "kubernetes":
			if _, ok := chosen[s.Name]; !ok {
				chosen[s.Name] = s
			}
		case s.Namespace == ns && enableServiceLinks:
			chosen[s.Name] = s
		}
	}
	env := map[string]string{}
	for _, s := range chosen {
		if len(s.Spec.Ports) == 0 {
			continue
		}
		prefix := envName(s.Name)
		ip := s.Spec.ClusterIP
		env[prefix+"_SERVICE_HOST"] = ip
		env[prefix+"_SERVICE_PORT"] = strconv.Itoa(int(s.Spec.Ports[0].Port))
		for i, p := range s.Spec.Ports {
			port := strconv.Itoa(int(p.Port))
			if p.Name != "" {
				env[prefix+"_SERVICE_PORT_"+envName(p.Name)] = port
			}
			proto := strings.ToLower(string(p.Protocol))
			if proto == "" {
				proto = "tcp"
			}
			url := proto + "://" + net.JoinHostPort(ip, port)
			if i == 0 {
				env[prefix+"_PORT"] = url
			}
			pp := fmt.Sprintf("%s_PORT_%d_%s", prefix, p.Port, strings.ToUpper(proto))
			env[pp] = url
			env[pp+"_PROTO"] = proto
			env[pp+"_PORT"] = port
			env[pp+"_ADDR"] = ip
		}
	}
	return env
}

// envName turns a service or port name into a variable name part.
func envName(s string) string {
	return strings.ToUpper(strings.ReplaceAll(s, "-", "_"))
}

// WithServiceEnv adds service-link variables to an environment from
// Resolve: a variable the container defines itself wins, and the
// service variables follow in sorted order. Resolve's $(VAR) expansion
// does not see them; use ResolveWithServices for that.
func WithServiceEnv(env []string, serviceEnv map[string]string) []string {
	defined := make(map[string]bool, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		defined[k] = true
	}
	keys := make([]string, 0, len(serviceEnv))
	for k := range serviceEnv {
		if !defined[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := append([]string(nil), env...)
	for _, k := range keys {
		out = append(out, k+"="+serviceEnv[k])
	}
	return out
}
