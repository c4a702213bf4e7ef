package distribution

import (
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestThroughput measures push and pull of a large image over loopback
// (go-containerregistry's in-memory registry). It runs only with
// BERTH_DIST_BENCH=1 (BERTH_DIST_BENCH_MB sets the image size, default
// 256 MiB in 4 layers of text-like data that gzip shrinks about 3×).
func TestThroughput(t *testing.T) {
	if os.Getenv("BERTH_DIST_BENCH") != "1" {
		t.Skip("skipping: set BERTH_DIST_BENCH=1 to measure push and pull throughput")
	}
	needRoot(t)
	total := 256
	if v, err := strconv.Atoi(os.Getenv("BERTH_DIST_BENCH_MB")); err == nil && v > 0 {
		total = v
	}
	words := strings.Fields("the quick brown fox jumps over a lazy dog while berth pulls and pushes layers of container images to registries")
	rnd := rand.New(rand.NewSource(1))
	var layers []tlayer
	for i := 0; i < 4; i++ {
		var sb strings.Builder
		for sb.Len() < total<<20/4 {
			sb.WriteString(words[rnd.Intn(len(words))])
			if rnd.Intn(12) == 0 {
				sb.WriteString(fmt.Sprintf(" %d\n", rnd.Int63()))
			} else {
				sb.WriteByte(' ')
			}
		}
		layers = append(layers, mkLayer(t, map[string]string{fmt.Sprintf("data/%d.txt", i): sb.String()}))
	}
	var raw, gz int64
	for _, l := range layers {
		raw += int64(len(l.tar))
		gz += int64(len(l.gz))
	}
	mb := func(n int64, d time.Duration) string { return fmt.Sprintf("%.0f MB/s", float64(n)/1e6/d.Seconds()) }

	reg := newRegistry(t)
	s, _ := newStore(t)
	c := newClient(t, s, Config{})
	ref := reg.host + "/bench/big:v1"
	loadImage(t, s, ref, layers...)

	start := time.Now()
	if _, err := c.Push(ctx, ref, PushOptions{}); err != nil {
		t.Fatal(err)
	}
	first := time.Since(start)
	reg2 := newRegistry(t)
	ref2 := reg2.host + "/bench/big:v1"
	s.Tag(ref, ref2)
	start = time.Now()
	if _, err := c.Push(ctx, ref2, PushOptions{}); err != nil {
		t.Fatal(err)
	}
	second := time.Since(start)

	s2, _ := newStore(t)
	c2 := newClient(t, s2, Config{})
	start = time.Now()
	if _, err := c2.Pull(ctx, ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	pull := time.Since(start)
	start = time.Now()
	if _, err := c2.Pull(ctx, ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	again := time.Since(start)

	t.Logf("image: %d MB uncompressed, %d MB gzip, 4 layers", raw/1e6, gz/1e6)
	t.Logf("push of a loaded image (gzip + upload): %v, %s of uncompressed data", first.Round(time.Millisecond), mb(raw, first))
	t.Logf("push again to another registry (kept gzip, no compression): %v, %s of blobs", second.Round(time.Millisecond), mb(gz, second))
	t.Logf("pull (download, verify, gunzip, keep both blobs, unpack): %v, %s of blobs, %s uncompressed", pull.Round(time.Millisecond), mb(gz, pull), mb(raw, pull))
	t.Logf("pull again (up to date): %v", again.Round(time.Millisecond))
}
