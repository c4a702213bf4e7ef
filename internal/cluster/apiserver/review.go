package apiserver

import (
	"net/http"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
)

// review answers SelfSubjectAccessReview (`kubectl auth can-i`) with the
// real authorizer and SelfSubjectReview (`kubectl auth whoami`).
func (s *Server) review(w http.ResponseWriter, req *http.Request, ri *reqInfo) error {
	body, err := readBody(req)
	if err != nil {
		return err
	}
	obj, _, err := s.decodeObject(ri.r, mediaType(req), body, "Ignore")
	if err != nil {
		return err
	}
	u := ri.user
	switch o := obj.(type) {
	case *authenticationv1.SelfSubjectReview:
		o.Status.UserInfo = authenticationv1.UserInfo{Username: u.Name, Groups: []string{"berth:" + u.Role, "system:authenticated"}}
		return s.respondObject(w, req, ri.r, 201, o)
	case *authorizationv1.SelfSubjectAccessReview:
		o.Status = authorizationv1.SubjectAccessReviewStatus{}
		ra := o.Spec.ResourceAttributes
		switch {
		case u.Role == "admin":
			o.Status.Allowed = true
		case ra == nil:
			// Non-resource paths (discovery, /version, health) are open to
			// every authenticated user.
			o.Status.Allowed = o.Spec.NonResourceAttributes != nil && o.Spec.NonResourceAttributes.Verb == "get"
		default:
			var target *resource
			for _, r := range resources {
				if r.group == ra.Group && r.name == ra.Resource && (ra.Version == "" || ra.Version == r.version) {
					target = r
					break
				}
			}
			if target == nil || ra.Verb == "*" || ra.Resource == "*" {
				o.Status.Reason = "not allowed for role " + u.Role
				break
			}
			q := &reqInfo{r: target, ns: ra.Namespace, name: ra.Name, sub: ra.Subresource, verb: ra.Verb, user: u}
			if err := s.authorize(req.Context(), u, q); err == nil {
				o.Status.Allowed = true
			} else {
				o.Status.Reason = err.Error()
			}
		}
		return s.respondObject(w, req, ri.r, 201, o)
	}
	return errBadRequest("unexpected review object %T", obj)
}
