package apiserver

import (
	"fmt"
	"testing"
)

func BenchmarkCreateConfigMap(b *testing.B) {
	ns := newNS(b)
	base := "/api/v1/namespaces/" + ns + "/configmaps"
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := do(b, "POST", base, cm(fmt.Sprintf("b%d", i), map[string]string{"k": "v"})); r.code != 201 {
			b.Fatalf("create: HTTP %d", r.code)
		}
	}
}

func BenchmarkListConfigMaps(b *testing.B) {
	ns := newNS(b)
	base := "/api/v1/namespaces/" + ns + "/configmaps"
	for i := 0; i < 200; i++ {
		do(b, "POST", base, cm(fmt.Sprintf("b%d", i), map[string]string{"k": "v"}))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := do(b, "GET", base+"?limit=100", nil); r.code != 200 {
			b.Fatalf("list: HTTP %d", r.code)
		}
	}
}
