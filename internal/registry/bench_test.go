package registry

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

// BenchmarkBlob measures pushing (POST + streamed PATCH + PUT, the way
// docker pushes) and pulling a 64 MiB blob over loopback HTTP; the
// registry root is a temporary directory (fsync included).
func BenchmarkBlob(b *testing.B) {
	data := randBytes(64 << 20)
	d := digest.FromBytes(data)
	e := newEnv(b, Options{})
	c := e.srv.Client()
	b.Run("push", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for i := 0; i < b.N; i++ {
			name := fmt.Sprintf("bench%d", i)
			res, err := c.Post(e.srv.URL+"/v2/"+name+"/blobs/uploads/", "", nil)
			if err != nil || res.StatusCode != 202 {
				b.Fatal(err, res.Status)
			}
			res.Body.Close()
			loc := e.srv.URL + res.Header.Get("Location")
			req, _ := http.NewRequest("PATCH", loc, io.NopCloser(bytes.NewReader(data)))
			res, err = c.Do(req)
			if err != nil || res.StatusCode != 202 {
				b.Fatal(err, res.Status)
			}
			res.Body.Close()
			req, _ = http.NewRequest("PUT", loc+"?digest="+d.String(), nil)
			res, err = c.Do(req)
			if err != nil || res.StatusCode != 201 {
				b.Fatal(err, res.Status)
			}
			res.Body.Close()
			// drop the blob so the next push stores it again
			b.StopTimer()
			e.do("DELETE", "/v2/"+name+"/blobs/"+d.String(), nil)
			removeFile(e.reg.st.blobPath(d))
			b.StartTimer()
		}
	})
	e.pushBlob("pull", data)
	b.Run("pull", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for i := 0; i < b.N; i++ {
			res, err := c.Get(e.srv.URL + "/v2/pull/blobs/" + d.String())
			if err != nil || res.StatusCode != 200 {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if n != int64(len(data)) {
				b.Fatalf("pulled %d bytes", n)
			}
		}
	})
}
