package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/internal/errdefs"
)

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestEmbeddedAndExternal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	st, err := Open(ctx, Config{DataDir: filepath.Join(t.TempDir(), "etcd"), Name: "m1", ClientURL: clientURL, PeerURL: fmt.Sprintf("http://127.0.0.1:%d", freePort(t))})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if !st.Embedded() {
		t.Errorf("Embedded: got false, want true")
	}
	if _, err := st.Client.Put(ctx, "/k", "v"); err != nil {
		t.Fatal(err)
	}
	// The same member used as external etcd through its client URL.
	ext, err := Open(ctx, Config{Endpoints: []string{clientURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	resp, err := ext.Client.Get(ctx, "/k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("external read: got %v %v, want v", resp, err)
	}
	if ext.Embedded() {
		t.Errorf("external store reports Embedded")
	}
	if _, err := st.MemberAdd(ctx, "", "https://x:1"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("MemberAdd without a name: got %v, want invalid argument", err)
	}
	st.Close()
	st.Close() // closing twice is safe
}

func TestBadConfig(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		cfg  Config
		want error
	}{
		{"bad client URL", Config{DataDir: t.TempDir(), ClientURL: "::", PeerURL: "http://127.0.0.1:1"}, errdefs.ErrInvalidArgument},
		{"bad peer URL", Config{DataDir: t.TempDir(), ClientURL: "http://127.0.0.1:1", PeerURL: "nope"}, errdefs.ErrInvalidArgument},
	}
	for _, tc := range cases {
		_, err := Open(ctx, tc.cfg)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err := Open(tctx, Config{Endpoints: []string{fmt.Sprintf("http://127.0.0.1:%d", freePort(t))}})
	if err == nil || !strings.Contains(err.Error(), "etcd endpoints") {
		t.Errorf("unreachable external etcd: got %v, want an error naming the endpoints", err)
	}
}
