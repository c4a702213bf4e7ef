package apiserver

import (
	"fmt"
	"strings"
	"testing"
)

// TestEndpointsValidationAndTable checks what the endpoints controller and
// users write: defaults, Kubernetes' limits, and kubectl's columns.
func TestEndpointsValidationAndTable(t *testing.T) {
	ns := newNS(t)
	epPath := "/api/v1/namespaces/" + ns + "/endpoints"
	slPath := "/apis/discovery.k8s.io/v1/namespaces/" + ns + "/endpointslices"
	bad := []struct {
		name, path, body, field string
	}{
		{"endpoints bad ip", epPath, `{"metadata":{"name":"a"},"subsets":[{"addresses":[{"ip":"10.0.0.300"}],"ports":[{"port":80}]}]}`, "subsets[0].addresses[0].ip"},
		{"endpoints bad port", epPath, `{"metadata":{"name":"a"},"subsets":[{"addresses":[{"ip":"10.0.0.1"}],"ports":[{"port":0}]}]}`, "subsets[0].ports[0].port"},
		{"endpoints unnamed ports", epPath, `{"metadata":{"name":"a"},"subsets":[{"addresses":[{"ip":"10.0.0.1"}],"ports":[{"port":80},{"port":81}]}]}`, "subsets[0].ports[0].name"},
		{"endpoints empty subset", epPath, `{"metadata":{"name":"a"},"subsets":[{"ports":[{"port":80}]}]}`, "subsets[0]"},
		{"slice without addressType", slPath, `{"metadata":{"name":"a"},"endpoints":[{"addresses":["10.0.0.1"]}]}`, "addressType"},
		{"slice bad addressType", slPath, `{"metadata":{"name":"a"},"addressType":"IPv5","endpoints":[]}`, "addressType"},
		{"slice IPv6 address in IPv4 slice", slPath, `{"metadata":{"name":"a"},"addressType":"IPv4","endpoints":[{"addresses":["fd00::1"]}]}`, "endpoints[0].addresses[0]"},
		{"slice endpoint without address", slPath, `{"metadata":{"name":"a"},"addressType":"IPv4","endpoints":[{"addresses":[]}]}`, "endpoints[0].addresses"},
		{"slice bad protocol", slPath, `{"metadata":{"name":"a"},"addressType":"IPv4","endpoints":[],"ports":[{"port":80,"protocol":"HTTP"}]}`, "ports[0].protocol"},
		{"slice duplicate port name", slPath, `{"metadata":{"name":"a"},"addressType":"IPv4","endpoints":[],"ports":[{"port":80},{"port":81}]}`, "ports[1].name"},
	}
	for _, tc := range bad {
		r := do(t, "POST", tc.path, tc.body)
		if r.code != 422 || !strings.Contains(string(r.body), tc.field) {
			t.Errorf("%s: got %d %s, want 422 naming %s", tc.name, r.code, r.body, tc.field)
		}
	}

	// Defaults: protocol TCP; a slice port's name is "".
	mustCode(t, do(t, "POST", epPath, `{"metadata":{"name":"web"},"subsets":[{"addresses":[{"ip":"10.0.0.1"},{"ip":"10.0.0.2"}],"notReadyAddresses":[{"ip":"10.0.0.9"}],"ports":[{"name":"a","port":80},{"name":"b","port":81}]}]}`), 201)
	ep := do(t, "GET", epPath+"/web", nil)
	if !strings.Contains(string(ep.body), `{"name":"a","port":80,"protocol":"TCP"}`) {
		t.Errorf("endpoints port protocol: got %s, want TCP", ep.body)
	}
	var eps []string
	for i := range 150 {
		eps = append(eps, fmt.Sprintf(`{"addresses":["10.1.%d.%d"],"conditions":{"ready":true}}`, i/100, i%100+1))
	}
	mustCode(t, do(t, "POST", slPath, `{"metadata":{"name":"web-x"},"addressType":"IPv4","endpoints":[`+strings.Join(eps, ",")+`],"ports":[{"port":80},{"name":"b","port":81},{"name":"c"},{"name":"d","port":83}]}`), 201)
	sl := do(t, "GET", slPath+"/web-x", nil)
	if !strings.Contains(string(sl.body), `{"name":"","protocol":"TCP","port":80}`) {
		t.Errorf("slice port defaults: got %s, want name \"\" and protocol TCP", sl.body)
	}
	mustCode(t, do(t, "POST", slPath, `{"metadata":{"name":"web-empty"},"addressType":"IPv4","endpoints":[]}`), 201)

	table := func(path string) [][]any {
		t.Helper()
		tb := do(t, "GET", path, nil, withAccept("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"))
		mustCode(t, tb, 200)
		var rows [][]any
		for _, r := range tb.obj["rows"].([]any) {
			rows = append(rows, r.(map[string]any)["cells"].([]any))
		}
		return rows
	}
	// kubectl's ENDPOINTS column: ready addresses, port by port, three
	// then a count.
	if got := table(epPath)[0][1]; got != "10.0.0.1:80,10.0.0.2:80,10.0.0.1:81 + 1 more..." {
		t.Errorf("endpoints column: got %q", got)
	}
	rows := table(slPath)
	if len(rows) != 2 {
		t.Fatalf("slice rows: %v", rows)
	}
	// Sorted by name: web-empty, web-x.
	if got := fmt.Sprint(rows[0][1:4]); got != "[IPv4 <unset> <unset>]" {
		t.Errorf("empty slice row: got %s", got)
	}
	if got := fmt.Sprint(rows[1][1:4]); got != "[IPv4 80,81,c + 1 more... 10.1.0.1,10.1.0.2,10.1.0.3 + 147 more...]" {
		t.Errorf("slice row: got %s", got)
	}
}
