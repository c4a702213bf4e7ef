package apiserver

import (
	"fmt"
	"strconv"
	"testing"
)

// NodePort Services get a free port of 30000-32767 for each port; a taken
// or out-of-range port is refused; updates keep the ports (kubectl apply
// of the original manifest leaves them out); changing to ClusterIP
// releases them; so does deleting the Service.
func TestServiceNodePorts(t *testing.T) {
	ns := newNS(t)
	base := "/api/v1/namespaces/" + ns + "/services"
	svc := `{"apiVersion":"v1","kind":"Service","metadata":{"name":"%s"},"spec":{"type":"NodePort","ports":[%s]}}`
	nodePort := func(r resp, i int) int {
		t.Helper()
		ps, _ := r.obj["spec"].(map[string]any)["ports"].([]any)
		if i >= len(ps) {
			t.Fatalf("no port %d in %s", i, r.body)
		}
		n, _ := strconv.Atoi(fmt.Sprint(ps[i].(map[string]any)["nodePort"]))
		return n
	}
	a := do(t, "POST", base, fmt.Sprintf(svc, "a", `{"name":"http","port":80},{"name":"dns","port":53,"protocol":"UDP"}`))
	mustCode(t, a, 201)
	p0, p1 := nodePort(a, 0), nodePort(a, 1)
	if p0 < 30000 || p0 > 32767 || p1 < 30000 || p1 > 32767 || p0 == p1 {
		t.Fatalf("allocated node ports %d, %d: want two distinct ports in 30000-32767", p0, p1)
	}
	// Taken, out of range.
	mustCode(t, do(t, "POST", base, fmt.Sprintf(svc, "b", fmt.Sprintf(`{"port":80,"nodePort":%d}`, p0))), 422)
	r := do(t, "POST", base, fmt.Sprintf(svc, "c", `{"port":80,"nodePort":80}`))
	mustCode(t, r, 422)
	// A nodePort on a ClusterIP Service is forbidden.
	mustCode(t, do(t, "POST", base, `{"apiVersion":"v1","kind":"Service","metadata":{"name":"d"},"spec":{"ports":[{"port":80,"nodePort":31999}]}}`), 422)
	// An explicit free port is honoured.
	want := 32000
	if want == p0 || want == p1 {
		want = 32001
	}
	e := do(t, "POST", base, fmt.Sprintf(svc, "e", fmt.Sprintf(`{"port":80,"nodePort":%d}`, want)))
	mustCode(t, e, 201)
	if got := nodePort(e, 0); got != want {
		t.Errorf("explicit nodePort: got %d, want %d", got, want)
	}
	// A replace that leaves the ports out keeps them.
	cur := do(t, "GET", base+"/a", nil)
	put := fmt.Sprintf(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"a","resourceVersion":"%s"},"spec":{"type":"NodePort","clusterIP":"%s","ports":[{"name":"http","port":80},{"name":"dns","port":53,"protocol":"UDP"}]}}`, cur.str("metadata.resourceVersion"), cur.str("spec.clusterIP"))
	u := do(t, "PUT", base+"/a", put)
	mustCode(t, u, 200)
	if nodePort(u, 0) != p0 || nodePort(u, 1) != p1 {
		t.Errorf("after a replace without nodePorts: got %d, %d, want %d, %d", nodePort(u, 0), nodePort(u, 1), p0, p1)
	}
	// Back to ClusterIP (dropping the ports) frees them for others.
	mustCode(t, do(t, "PATCH", base+"/a", `{"spec":{"type":"ClusterIP","ports":[{"name":"http","port":80,"nodePort":null},{"name":"dns","port":53,"protocol":"UDP","nodePort":null}]}}`, withCT(mtMergePatch)), 200)
	mustCode(t, do(t, "POST", base, fmt.Sprintf(svc, "f", fmt.Sprintf(`{"port":80,"nodePort":%d}`, p0))), 201)
	// Deleting a Service frees its ports.
	mustCode(t, do(t, "DELETE", base+"/e", nil), 200)
	eventually(t, "node port released", func() bool {
		return do(t, "POST", base, fmt.Sprintf(svc, "g", fmt.Sprintf(`{"port":80,"nodePort":%d}`, want))).code == 201
	})
}
