package apiserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// defaultKubeletPort is used when a Node does not publish
// status.daemonEndpoints.kubeletEndpoint.Port.
const defaultKubeletPort = 10250

// nodeTLS is the client side of API server → node agent connections.
type nodeTLS struct {
	cert  tls.Certificate
	roots *x509.CertPool
	err   error // why streaming to nodes is unavailable
}

func loadNodeTLS(cfg Config) *nodeTLS {
	if cfg.KubeletClientCertFile == "" || cfg.KubeletClientKeyFile == "" || cfg.KubeletCAFile == "" {
		return &nodeTLS{err: errors.New("the API server has no client certificate for node agents (KubeletClientCertFile, KubeletClientKeyFile, KubeletCAFile)")}
	}
	cert, err := tls.LoadX509KeyPair(cfg.KubeletClientCertFile, cfg.KubeletClientKeyFile)
	if err != nil {
		return &nodeTLS{err: fmt.Errorf("node agent client certificate: %w", err)}
	}
	ca, err := os.ReadFile(cfg.KubeletCAFile)
	if err != nil {
		return &nodeTLS{err: fmt.Errorf("node agent CA: %w", err)}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return &nodeTLS{err: fmt.Errorf("node agent CA %s: no PEM certificate in it", cfg.KubeletCAFile)}
	}
	return &nodeTLS{cert: cert, roots: pool}
}

// config returns the TLS config for one node: the agent's certificate must
// chain to the cluster CA and name the address dialed, the node's name, or
// be the node's own certificate (CN system:node:NAME).
func (n *nodeTLS) config(node, host string) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{n.cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"}, // upgrades need HTTP/1.1
		// Verified below: the name check accepts the node's name too.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("node %q presented no certificate", node)
			}
			leaf := cs.PeerCertificates[0]
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: n.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("node %q serving certificate is not from the cluster CA: %w", node, err)
			}
			if leaf.VerifyHostname(host) == nil || leaf.VerifyHostname(node) == nil || leaf.Subject.CommonName == "system:node:"+node {
				return nil
			}
			return fmt.Errorf("node %q serving certificate names neither %s nor the node (CN %q, DNS %v, IPs %v)", node, host, leaf.Subject.CommonName, leaf.DNSNames, leaf.IPAddresses)
		},
	}
}

// nodeAddress returns host:port of a node's agent from its Node status.
func (s *Server) nodeAddress(ctx context.Context, name string) (string, error) {
	obj, err := s.st.get(ctx, lookup("", "v1", "nodes"), "", name)
	if err != nil {
		if toStatus(err).status.Code == 404 {
			return "", newStatus(503, metav1.StatusReasonServiceUnavailable, nil, fmt.Sprintf("node %q does not exist: it was deleted or its agent never registered", name))
		}
		return "", err
	}
	node, ok := obj.(*corev1.Node)
	if !ok {
		return "", errInternal("stored node is not a Node")
	}
	return kubeletAddress(node)
}

// kubeletAddress returns host:port of a node's agent from its status.
func kubeletAddress(node *corev1.Node) (string, error) {
	name := node.Name
	var host string
	for _, want := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP, corev1.NodeHostName} {
		for _, a := range node.Status.Addresses {
			if a.Type == want && a.Address != "" && host == "" {
				host = a.Address
			}
		}
	}
	if host == "" {
		return "", newStatus(503, metav1.StatusReasonServiceUnavailable, nil, fmt.Sprintf("node %q has no address in its status (InternalIP, ExternalIP or Hostname): is its agent running?", name))
	}
	port := int(node.Status.DaemonEndpoints.KubeletEndpoint.Port)
	if port == 0 {
		port = defaultKubeletPort
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// podContainer picks the container a log/exec/attach request means: the
// one named, or the only one.
func podContainer(pod *corev1.Pod, name string) (string, error) {
	var names, inits []string
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	for _, c := range pod.Spec.InitContainers {
		inits = append(inits, c.Name)
	}
	var ephemeral []string
	for _, c := range pod.Spec.EphemeralContainers {
		ephemeral = append(ephemeral, c.Name)
	}
	if name == "" {
		if len(names) == 1 {
			return names[0], nil
		}
		msg := fmt.Sprintf("a container name must be specified for pod %s, choose one of: %v", pod.Name, names)
		if len(inits) > 0 {
			msg += fmt.Sprintf(" or one of the init containers: %v", inits)
		}
		return "", errBadRequest("%s", msg)
	}
	if slices.Contains(names, name) || slices.Contains(inits, name) || slices.Contains(ephemeral, name) {
		return name, nil
	}
	return "", errBadRequest("container %s is not valid for pod %s", name, pod.Name)
}

// streamQuery copies the parameters the agent understands, checking the
// numeric ones so a typo gets a clear answer here.
func streamQuery(sub string, q url.Values) (url.Values, error) {
	out := url.Values{}
	switch sub {
	case "log":
		for _, k := range []string{"follow", "previous", "timestamps"} {
			if v := q[k]; len(v) > 0 {
				if _, err := strconv.ParseBool(v[0]); err != nil && v[0] != "" {
					return nil, errBadRequest("invalid %s=%q: want true or false", k, v[0])
				}
				out[k] = v[:1]
			}
		}
		for _, k := range []string{"tailLines", "sinceSeconds", "limitBytes"} {
			if v := q.Get(k); v != "" {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 0 || (n == 0 && k != "tailLines") {
					return nil, errBadRequest("invalid %s=%q: want a positive whole number", k, v)
				}
				out.Set(k, v)
			}
		}
		if v := q.Get("sinceTime"); v != "" {
			if _, err := time.Parse(time.RFC3339, v); err != nil {
				return nil, errBadRequest("invalid sinceTime=%q: want an RFC 3339 time such as 2024-01-02T15:04:05Z", v)
			}
			if out.Has("sinceSeconds") {
				return nil, errBadRequest("sinceSeconds and sinceTime cannot both be set")
			}
			out.Set("sinceTime", v)
		}
	case "exec", "attach":
		for _, k := range []string{"stdin", "stdout", "stderr", "tty"} {
			if v := q[k]; len(v) > 0 {
				out[k] = v[:1]
			}
		}
		if sub == "exec" {
			if len(q["command"]) == 0 {
				return nil, errBadRequest("you must specify at least one command for the container")
			}
			out["command"] = q["command"]
		}
	}
	return out, nil
}

// podStream proxies log/exec/attach/portforward to the agent of the pod's
// node, upgrades (SPDY, WebSocket) included, as the Kubernetes API server
// proxies to the kubelet.
func (s *Server) podStream(w http.ResponseWriter, req *http.Request, ri *reqInfo) error {
	if ri.r.name != "pods" || !slices.Contains([]string{"log", "exec", "attach", "portforward"}, ri.sub) {
		return errMethodNotAllowed("%s/%s does not support %s", ri.r.name, ri.sub, req.Method)
	}
	if ri.sub == "log" && req.Method != http.MethodGet {
		return errMethodNotAllowed("pods/log supports GET only")
	}
	ctx := req.Context()
	obj, err := s.st.get(ctx, ri.r, ri.ns, ri.name)
	if err != nil {
		return err
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return errInternal("stored pod is not a Pod")
	}
	node := pod.Spec.NodeName
	if node == "" {
		return errBadRequest("pod %s does not have a host assigned", ri.name)
	}
	q, err := streamQuery(ri.sub, req.URL.Query())
	if err != nil {
		return err
	}
	seg := func(s ...string) string {
		for i := range s {
			s[i] = url.PathEscape(s[i])
		}
		return "/" + strings.Join(s, "/")
	}
	var path string
	switch ri.sub {
	case "portforward":
		path = seg("portForward", ri.ns, ri.name, string(pod.UID))
	default:
		c, err := podContainer(pod, req.URL.Query().Get("container"))
		if err != nil {
			return err
		}
		if ri.sub == "log" {
			path = seg("containerLogs", ri.ns, ri.name, c)
		} else {
			path = seg(ri.sub, ri.ns, ri.name, string(pod.UID), c)
		}
	}
	if s.nodeTLS.err != nil {
		return newStatus(503, metav1.StatusReasonServiceUnavailable, nil, fmt.Sprintf("pods/%s %s: %v", ri.sub, ri.name, s.nodeTLS.err))
	}
	addr, err := s.nodeAddress(ctx, node)
	if err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(addr)
	target := &url.URL{Scheme: "https", Host: addr, Path: path, RawQuery: q.Encode()}
	s.log.Debug("proxying to node agent", "sub", ri.sub, "pod", ri.ns+"/"+ri.name, "node", node, "url", target.String())
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = target
			pr.Out.Host = addr
			// The agent trusts the API server's certificate, not the
			// user's credentials: never pass those on.
			for _, h := range []string{"Authorization", "Cookie", "Impersonate-User", "Impersonate-Group", "Impersonate-Uid"} {
				pr.Out.Header.Del(h)
			}
		},
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			TLSClientConfig:     s.nodeTLS.config(node, host),
			TLSHandshakeTimeout: 10 * time.Second,
			DisableKeepAlives:   true,
			// HTTP/1.1 only: SPDY and WebSocket upgrades.
			TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		},
		FlushInterval: -1, // logs -f: every write reaches the client at once
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			code, reason := 502, metav1.StatusReasonInternalError
			var op *net.OpError
			if errors.As(err, &op) && op.Op == "dial" {
				code, reason = 503, metav1.StatusReasonServiceUnavailable
			}
			if r.Context().Err() != nil {
				return // the client left
			}
			s.log.Warn("node agent unreachable", "node", node, "addr", addr, "err", err)
			writeError(w, newStatus(int32(code), reason, nil, fmt.Sprintf("pods/%s %s: error reaching the agent of node %q at %s: %v", ri.sub, ri.name, node, addr, err)))
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	proxy.ServeHTTP(w, req)
	return nil
}
