package shim

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth/berth/internal/errdefs"
)

func TestStartBadOptions(t *testing.T) {
	base := Options{Binary: shimBin, ID: "c1", Bundle: t.TempDir(), Runtime: "/usr/bin/crun", RuntimeRoot: t.TempDir()}
	for name, mod := range map[string]func(*Options){
		"no id":             func(o *Options) { o.ID = "" },
		"id with slash":     func(o *Options) { o.ID = "../x" },
		"exec without file": func(o *Options) { o.ExecID = "e1" },
		"exec id with dots": func(o *Options) { o.ExecID, o.ProcessFile = "..", "/p.json" },
	} {
		o := base
		mod(&o)
		if _, err := Start(o); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: got %v, want ErrInvalidArgument", name, err)
		}
	}
}

func TestStartReportsShimSetupError(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-bundle")
	_, err := Start(Options{Binary: shimBin, ID: "c1", Bundle: missing, Runtime: "/usr/bin/crun", RuntimeRoot: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "no-such-bundle") {
		t.Fatalf("got %v, want an error naming the missing bundle", err)
	}
}

func TestConnectWithoutShim(t *testing.T) {
	if _, err := Connect(t.TempDir()); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
}
