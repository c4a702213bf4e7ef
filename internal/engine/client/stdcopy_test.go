package client

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func frame(stream byte, s string) []byte {
	h := make([]byte, 8)
	h[0] = stream
	binary.BigEndian.PutUint32(h[4:], uint32(len(s)))
	return append(h, s...)
}

func TestDemux(t *testing.T) {
	var in bytes.Buffer
	in.Write(frame(1, "out1\n"))
	in.Write(frame(2, "err1\n"))
	in.Write(frame(1, "out2\n"))
	var o, e bytes.Buffer
	if err := Demux(&in, &o, &e); err != nil {
		t.Fatal(err)
	}
	if o.String() != "out1\nout2\n" || e.String() != "err1\n" {
		t.Errorf("got stdout %q stderr %q", o.String(), e.String())
	}
	// A truncated frame is an error, not silence.
	bad := frame(1, "hello")[:10]
	if err := Demux(bytes.NewReader(bad), &o, &e); err == nil {
		t.Error("Demux of a truncated frame: got nil error")
	}
	if err := Demux(bytes.NewReader([]byte{9, 0, 0, 0, 0, 0, 0, 1, 'x'}), &o, &e); err == nil {
		t.Error("Demux of an unknown stream: got nil error")
	}
}
