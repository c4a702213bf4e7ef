package shim

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/berth/berth/internal/engine/cgroups"
)

// BenchmarkRunTrue compares a container running `true` through the shim
// (shim start, start, wait, exit record, runtime delete) with the bare
// runtime's foreground `run` of the same bundle.
func BenchmarkRunTrue(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: runs real containers")
	}
	if err := cgroups.PrepareHost(); err != nil {
		b.Fatal(err)
	}
	rootfs := busybox(b)
	for _, rt := range runtimes(b) {
		for _, mode := range []string{"bare", "shim"} {
			b.Run(rt.Name+"/"+mode, func(b *testing.B) {
				e := &env{t: b, rt: rt, rootfs: rootfs, cgroup: fmt.Sprintf("/berth-bench-%d", os.Getpid())}
				defer e.cleanupCgroups()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					c := e.bundle([]string{"true"}, nil)
					b.StartTimer()
					if mode == "bare" {
						cmd := exec.Command(rt.Path, "--root", rt.Root, "run", "--bundle", c.bundle, c.id)
						if out, err := cmd.CombinedOutput(); err != nil {
							b.Fatalf("%s run: %v %s", rt.Name, err, out)
						}
						continue
					}
					h, err := Start(e.options(c))
					if err != nil {
						b.Fatal(err)
					}
					if _, err := h.Start(); err != nil {
						b.Fatal(err)
					}
					if es, err := h.Wait(context.Background()); err != nil || es.ExitCode != 0 {
						b.Fatalf("wait: %+v %v", es, err)
					}
				}
			})
		}
	}
}
