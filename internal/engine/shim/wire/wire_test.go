package wire

import (
	"bytes"
	"testing"
)

func TestFrameDemux(t *testing.T) {
	var stream bytes.Buffer
	stream.Write(Frame(StreamStdout, []byte("out1 ")))
	stream.Write(Frame(StreamStderr, []byte("err1")))
	stream.Write(Frame(StreamStdout, bytes.Repeat([]byte("x"), 70000)))
	stream.Write(Frame(StreamStdout, nil))
	if h := Frame(StreamStderr, []byte("abc"))[:8]; !bytes.Equal(h, []byte{2, 0, 0, 0, 0, 0, 0, 3}) {
		t.Fatalf("header %v, want [2 0 0 0 0 0 0 3]", h)
	}
	var out, errb bytes.Buffer
	if err := Demux(&out, &errb, &stream); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 5+70000 || !bytes.HasPrefix(out.Bytes(), []byte("out1 x")) || errb.String() != "err1" {
		t.Errorf("got stdout %d bytes, stderr %q; want 70005 bytes and err1", out.Len(), errb.String())
	}
	if err := Demux(&out, &errb, bytes.NewReader([]byte{9, 0, 0, 0, 0, 0, 0, 1, 'x'})); err == nil {
		t.Error("Demux accepted stream id 9")
	}
	if err := Demux(&out, &errb, bytes.NewReader([]byte{1, 0, 0, 0, 0, 0, 0, 5, 'x'})); err == nil {
		t.Error("Demux accepted a truncated frame")
	}
}

func FuzzDemux(f *testing.F) {
	f.Add(append(Frame(1, []byte("hi")), Frame(2, []byte("there"))...))
	f.Add([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var out, errb bytes.Buffer
		if err := Demux(&out, &errb, bytes.NewReader(b)); err != nil {
			return
		}
		if out.Len()+errb.Len() > len(b) {
			t.Fatalf("demuxed %d bytes from %d", out.Len()+errb.Len(), len(b))
		}
	})
}
