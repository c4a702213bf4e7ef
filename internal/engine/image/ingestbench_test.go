package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Stime.Nano() + ru.Utime.Nano())
}

// BenchmarkIngestLayer ingests one layer like those of the images step of
// the benchmark (docs/benchmarks.md): 48 MiB of 4 MiB files, each half
// random bytes and half text, gzip-compressed (gzip.BestSpeed, as berth
// pushes), from memory. It reports the CPU time per layer beside the wall
// time: the stages run at once.
func BenchmarkIngestLayer(b *testing.B) {
	needRoot(b)
	rng := rand.New(rand.NewPCG(1, 2))
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	const fileSize = 4 << 20
	for i := range 12 {
		buf := make([]byte, fileSize)
		for j := 0; j < fileSize/2; j++ {
			buf[j] = byte(rng.Uint32())
		}
		line := []byte(fmt.Sprintf("file %d: the quick brown fox jumps over the lazy dog\n", i))
		for j := fileSize / 2; j < fileSize; j += len(line) {
			copy(buf[j:], line)
		}
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("data/f%03d", i), Mode: 0o644, Size: fileSize, Typeflag: tar.TypeReg})
		tw.Write(buf)
	}
	tw.Close()
	var gb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gb, gzip.BestSpeed)
	zw.Write(tb.Bytes())
	zw.Close()
	blob := gb.Bytes()
	diffID := digest.FromBytes(tb.Bytes())
	src := LayerSource{Compressed: Compressed{Digest: digest.FromBytes(blob), Size: int64(len(blob)), MediaType: MediaTypeDockerLayer}, DiffID: diffID, ChainID: diffID}
	s, err := New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(tb.Len()))
	b.ResetTimer()
	var cpu time.Duration
	for i := 0; i < b.N; i++ {
		c0 := cpuTime()
		if err := s.IngestLayer(bytes.NewReader(blob), src); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - c0
		b.StopTimer()
		s.snaps.RemoveLayer(src.ChainID)
		s.content.Delete(src.Digest)
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
}
