package apiserver

import (
	"mime"
	"net/http"
	"strings"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	apidiscoveryv2beta1 "k8s.io/api/apidiscovery/v2beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var itemVerbs = metav1.Verbs{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

func verbsOf(r *resource) metav1.Verbs {
	if r.virtual {
		return metav1.Verbs{"create"}
	}
	if r.metrics {
		return metav1.Verbs{"get", "list"}
	}
	return itemVerbs
}

func subVerbs(sub string) []string {
	switch sub {
	case "status", "scale", "ephemeralcontainers":
		return []string{"get", "patch", "update"}
	case "log":
		return []string{"get"}
	case "exec", "attach", "portforward":
		return []string{"create", "get"}
	case "binding", "eviction":
		return []string{"create"}
	case "finalize":
		return []string{"update"}
	}
	return nil
}

func subKind(r *resource, sub string) (group, version, kind string) {
	switch sub {
	case "scale":
		return "autoscaling", "v1", "Scale"
	case "binding":
		return "", "v1", "Binding"
	case "eviction":
		return "policy", "v1", "Eviction"
	case "exec":
		return "", "v1", "PodExecOptions"
	case "attach":
		return "", "v1", "PodAttachOptions"
	case "portforward":
		return "", "v1", "PodPortForwardOptions"
	case "log":
		return "", "v1", "Pod"
	}
	return r.group, r.version, r.kind
}

func subsOf(r *resource) []string {
	var subs []string
	if r.status {
		subs = append(subs, "status")
	}
	if r.scale {
		subs = append(subs, "scale")
	}
	return append(subs, r.extraSubs...)
}

// aggregatedVersion returns "v2" or "v2beta1" when the Accept header asks
// for aggregated discovery first (before plain JSON), else "".
func aggregatedVersion(req *http.Request) string {
	for _, part := range strings.Split(req.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if mt == "application/json" && params["g"] == "apidiscovery.k8s.io" && params["as"] == "APIGroupDiscoveryList" {
			if params["v"] == "v2" || params["v"] == "v2beta1" {
				return params["v"]
			}
			continue
		}
		if mt == "application/json" || mt == "*/*" {
			return ""
		}
	}
	return ""
}

func aggregatedGroup(group string) apidiscoveryv2.APIGroupDiscovery {
	g := apidiscoveryv2.APIGroupDiscovery{ObjectMeta: metav1.ObjectMeta{Name: group}}
	for _, v := range versionsOf(group) {
		vd := apidiscoveryv2.APIVersionDiscovery{Version: v, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent}
		for _, r := range resourcesOf(group, v) {
			scope := apidiscoveryv2.ScopeCluster
			if r.namespaced {
				scope = apidiscoveryv2.ScopeNamespace
			}
			rd := apidiscoveryv2.APIResourceDiscovery{
				Resource: r.name, ResponseKind: &metav1.GroupVersionKind{Group: r.group, Version: r.version, Kind: r.kind},
				Scope: scope, SingularResource: r.singular, Verbs: verbsOf(r), ShortNames: r.shortNames, Categories: r.categories,
			}
			for _, sub := range subsOf(r) {
				sg, sv, sk := subKind(r, sub)
				rd.Subresources = append(rd.Subresources, apidiscoveryv2.APISubresourceDiscovery{Subresource: sub, ResponseKind: &metav1.GroupVersionKind{Group: sg, Version: sv, Kind: sk}, Verbs: subVerbs(sub)})
			}
			vd.Resources = append(vd.Resources, rd)
		}
		g.Versions = append(g.Versions, vd)
	}
	return g
}

func writeAggregated(w http.ResponseWriter, v string, groups []string) {
	list := apidiscoveryv2.APIGroupDiscoveryList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupDiscoveryList", APIVersion: "apidiscovery.k8s.io/" + v}}
	for _, g := range groups {
		list.Items = append(list.Items, aggregatedGroup(g))
	}
	var out any = list
	if v == "v2beta1" {
		// The v2beta1 wire format is field-for-field the same as v2.
		var b apidiscoveryv2beta1.APIGroupDiscoveryList
		b.TypeMeta = list.TypeMeta
		for _, g := range list.Items {
			bg := apidiscoveryv2beta1.APIGroupDiscovery{ObjectMeta: g.ObjectMeta}
			for _, vd := range g.Versions {
				bv := apidiscoveryv2beta1.APIVersionDiscovery{Version: vd.Version, Freshness: apidiscoveryv2beta1.DiscoveryFreshness(vd.Freshness)}
				for _, rd := range vd.Resources {
					br := apidiscoveryv2beta1.APIResourceDiscovery{Resource: rd.Resource, ResponseKind: rd.ResponseKind, Scope: apidiscoveryv2beta1.ResourceScope(rd.Scope), SingularResource: rd.SingularResource, Verbs: rd.Verbs, ShortNames: rd.ShortNames, Categories: rd.Categories}
					for _, sd := range rd.Subresources {
						br.Subresources = append(br.Subresources, apidiscoveryv2beta1.APISubresourceDiscovery{Subresource: sd.Subresource, ResponseKind: sd.ResponseKind, Verbs: sd.Verbs})
					}
					bv.Resources = append(bv.Resources, br)
				}
				bg.Versions = append(bg.Versions, bv)
			}
			b.Items = append(b.Items, bg)
		}
		out = b
	}
	w.Header().Set("Vary", "Accept")
	writeJSONAs(w, "application/json;g=apidiscovery.k8s.io;v="+v+";as=APIGroupDiscoveryList", out)
}

func writeJSONAs(w http.ResponseWriter, ct string, v any) {
	rec := &ctWriter{ResponseWriter: w, ct: ct}
	writeJSON(rec, 200, v)
}

type ctWriter struct {
	http.ResponseWriter
	ct string
}

func (c *ctWriter) WriteHeader(code int) {
	c.ResponseWriter.Header().Set("Content-Type", c.ct)
	c.ResponseWriter.WriteHeader(code)
}

func (s *Server) discoveryAPI(w http.ResponseWriter, req *http.Request) {
	if v := aggregatedVersion(req); v != "" {
		writeAggregated(w, v, []string{""})
		return
	}
	w.Header().Set("Vary", "Accept")
	writeJSON(w, 200, metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"},
		ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: req.Host}}})
}

func apiGroup(g string) metav1.APIGroup {
	ag := metav1.APIGroup{TypeMeta: metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}, Name: g}
	for _, v := range versionsOf(g) {
		ag.Versions = append(ag.Versions, metav1.GroupVersionForDiscovery{GroupVersion: g + "/" + v, Version: v})
	}
	ag.PreferredVersion = ag.Versions[0]
	return ag
}

func (s *Server) discoveryAPIs(w http.ResponseWriter, req *http.Request) {
	if v := aggregatedVersion(req); v != "" {
		writeAggregated(w, v, groupOrder[1:])
		return
	}
	list := metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
	for _, g := range groupOrder[1:] {
		list.Groups = append(list.Groups, apiGroup(g))
	}
	w.Header().Set("Vary", "Accept")
	writeJSON(w, 200, list)
}

func (s *Server) discoveryGroup(w http.ResponseWriter, req *http.Request, g string) {
	if len(versionsOf(g)) == 0 || g == "" {
		writeError(w, newStatus(404, metav1.StatusReasonNotFound, nil, "the server could not find the requested resource"))
		return
	}
	writeJSON(w, 200, apiGroup(g))
}

func (s *Server) discoveryResources(w http.ResponseWriter, req *http.Request, group, version string) {
	list := metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: apiVersionOf(group, version)}
	for _, r := range resourcesOf(group, version) {
		list.APIResources = append(list.APIResources, metav1.APIResource{Name: r.name, SingularName: r.singular, Namespaced: r.namespaced, Kind: r.kind, Verbs: verbsOf(r), ShortNames: r.shortNames, Categories: r.categories})
		for _, sub := range subsOf(r) {
			sg, sv, sk := subKind(r, sub)
			list.APIResources = append(list.APIResources, metav1.APIResource{Name: r.name + "/" + sub, Namespaced: r.namespaced, Group: sg, Version: sv, Kind: sk, Verbs: subVerbs(sub)})
		}
	}
	writeJSON(w, 200, list)
}
