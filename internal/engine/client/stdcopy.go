package client

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Demux splits a multiplexed stream (8-byte headers: stream, 3 zero
// bytes, big-endian length) into stdout and stderr. It returns nil at a
// clean EOF between frames.
func Demux(r io.Reader, stdout, stderr io.Writer) error {
	var h [8]byte
	buf := make([]byte, 32<<10)
	for {
		if _, err := io.ReadFull(r, h[:]); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		n := int(binary.BigEndian.Uint32(h[4:]))
		var w io.Writer
		switch h[0] {
		case 0, 1:
			w = stdout
		case 2:
			w = stderr
		case 3:
			// systemerr: the daemon reports a failure in-band.
			b := make([]byte, n)
			io.ReadFull(r, b)
			return fmt.Errorf("error from daemon in stream: %s", b)
		default:
			return fmt.Errorf("unrecognized stream %d in multiplexed output", h[0])
		}
		for n > 0 {
			chunk := buf
			if n < len(chunk) {
				chunk = chunk[:n]
			}
			m, err := io.ReadFull(r, chunk)
			if m > 0 {
				if _, werr := w.Write(chunk[:m]); werr != nil {
					return werr
				}
			}
			if err != nil {
				return err
			}
			n -= m
		}
	}
}
