package apiserver

import (
	"context"
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"

	"github.com/berth/berth/internal/cluster/pki"
)

// User is an authenticated caller.
type User struct {
	Name string
	// Role is pki.RoleAdmin, RoleNode, RoleViewer or RoleJoin.
	Role string
	// Node is the node name of a node credential.
	Node string
}

// Authenticator identifies the caller of a request, or returns nil.
type Authenticator interface {
	Authenticate(req *http.Request) *User
}

type userKey struct{}

func withUser(ctx context.Context, u *User) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// UserFrom returns the authenticated user of a request context.
func UserFrom(ctx context.Context) *User {
	u, _ := ctx.Value(userKey{}).(*User)
	return u
}

// CredentialAuth accepts client certificates verified by the TLS layer
// (CN is the user; organization "system:masters" or "berth:admin" is admin,
// "berth:viewer" viewer, "system:nodes" with CN "system:node:NAME" a node)
// and bearer tokens from a token store.
type CredentialAuth struct {
	Tokens *pki.TokenStore
	// Static tokens (tests); compared in constant time.
	Static map[string]User
}

var _ Authenticator = (*CredentialAuth)(nil)

// Authenticate implements Authenticator.
func (a *CredentialAuth) Authenticate(req *http.Request) *User {
	if h := req.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return nil
		}
		tok = strings.TrimSpace(tok)
		for k, u := range a.Static {
			if subtle.ConstantTimeCompare([]byte(k), []byte(tok)) == 1 {
				u := u
				return &u
			}
		}
		if a.Tokens != nil {
			if rec, ok := a.Tokens.Lookup(tok); ok {
				u := &User{Name: rec.Name, Role: rec.Role}
				if rec.Role == pki.RoleNode {
					u.Node = rec.Name
					u.Name = "system:node:" + rec.Name
				}
				if u.Name == "" {
					u.Name = "token:" + rec.Role
				}
				return u
			}
		}
		return nil
	}
	if req.TLS != nil && len(req.TLS.VerifiedChains) > 0 && len(req.TLS.VerifiedChains[0]) > 0 {
		c := req.TLS.VerifiedChains[0][0]
		org := c.Subject.Organization
		switch {
		case slices.Contains(org, "system:masters"), slices.Contains(org, "berth:admin"):
			return &User{Name: c.Subject.CommonName, Role: pki.RoleAdmin}
		case slices.Contains(org, "system:nodes") && strings.HasPrefix(c.Subject.CommonName, "system:node:"):
			return &User{Name: c.Subject.CommonName, Role: pki.RoleNode, Node: strings.TrimPrefix(c.Subject.CommonName, "system:node:")}
		case slices.Contains(org, "berth:viewer"):
			return &User{Name: c.Subject.CommonName, Role: pki.RoleViewer}
		}
	}
	return nil
}

var readVerbs = []string{"get", "list", "watch"}

// authorize decides a resource request. obj is the stored object for node
// checks on existing pods (may be nil).
func (s *Server) authorize(ctx context.Context, u *User, ri *reqInfo) error {
	switch u.Role {
	case pki.RoleAdmin:
		return nil
	case pki.RoleViewer:
		if slices.Contains(readVerbs, ri.verb) && ri.r.name != "secrets" && (ri.sub == "" || ri.sub == "status" || ri.sub == "scale") {
			return nil
		}
		// Viewers read logs; exec, attach and port-forward act on the pod.
		if ri.verb == "get" && ri.r.group == "" && ri.r.name == "pods" && ri.sub == "log" {
			return nil
		}
	case pki.RoleNode:
		if ri.r.group == "" && nodeScopedKinds[ri.r.name] {
			if ri.verb != "get" || ri.name == "" || u.Node == "" {
				break
			}
			ok, err := s.nodeMayRead(ctx, u.Node, ri.r.name, ri.ns, ri.name)
			if err != nil {
				return err
			}
			if ok {
				return nil
			}
			return errForbidden("User %q cannot get %s %q in namespace %q: no pod bound to node %q refers to it", u.Name, ri.r.name, ri.name, ri.ns, u.Node)
		}
		if slices.Contains(readVerbs, ri.verb) && ri.sub != "exec" && ri.sub != "attach" && ri.sub != "portforward" {
			return nil
		}
		switch {
		case ri.r.group == "" && ri.r.name == "nodes":
			if ri.name == u.Node || (ri.verb == "create" && ri.name == "") {
				// create's name is checked against the body in checkNodeCreate.
				return nil
			}
		case ri.r.group == "coordination.k8s.io" && ri.r.name == "leases" && ri.ns == "kube-node-lease":
			if ri.name == u.Node || (ri.verb == "create" && ri.name == "") {
				return nil
			}
		case ri.r.group == "" && ri.r.name == "events" && (ri.verb == "create" || ri.verb == "patch" || ri.verb == "update"),
			ri.r.group == "events.k8s.io" && ri.r.name == "events" && (ri.verb == "create" || ri.verb == "patch" || ri.verb == "update"):
			// The event recorder patches the count of repeated events.
			return nil
		case ri.r.group == "" && ri.r.name == "pods" && ri.name != "" && (ri.sub == "status" || (ri.sub == "" && ri.verb == "delete")):
			pod, err := s.st.get(ctx, ri.r, ri.ns, ri.name)
			if err != nil {
				return err
			}
			if nodeNameOf(pod) == u.Node && u.Node != "" {
				return nil
			}
		}
	}
	return errForbidden("User %q (role %s) cannot %s resource %q%s in namespace %q", u.Name, u.Role, ri.verb, ri.r.name, subSuffix(ri.sub), ri.ns)
}

func subSuffix(sub string) string {
	if sub == "" {
		return ""
	}
	return "/" + sub
}
