// Package wire is the protocol between berth-shim (package
// shim/monitor) and its client (package shim): the exit record, the JSON
// request and response lines, file names in the bundle and Docker's stdcopy
// framing. Every connection starts with one JSON request line; the shim
// answers with one JSON response line; after a successful "attach" answer
// the connection carries the streams. It links only the standard library.
package wire

import (
	"io"
	"strconv"
	"time"

	"github.com/berth/berth/internal/engine/shim/wire/names"
)

// ExitStatus is how a container (or exec) process ended.
type ExitStatus struct {
	// ExitCode is the exit status, or 128+signal when killed by a signal.
	ExitCode  int       `json:"exitCode"`
	ExitedAt  time.Time `json:"exitedAt"`
	OOMKilled bool      `json:"oomKilled"`
}

// Status values reported by State.
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusExited  = "exited"
)

// Request is the first line of every connection.
type Request struct {
	Cmd    string `json:"cmd"` // start, wait, attach, resize, state, shutdown
	Stdin  bool   `json:"stdin,omitempty"`
	Stdout bool   `json:"stdout,omitempty"`
	Stderr bool   `json:"stderr,omitempty"`
	Height uint16 `json:"height,omitempty"`
	Width  uint16 `json:"width,omitempty"`
}

// Response is the shim's answer line.
type Response struct {
	Error  string      `json:"error,omitempty"`
	Pid    int         `json:"pid,omitempty"`
	Status string      `json:"status,omitempty"`
	Tty    bool        `json:"tty,omitempty"`
	Exit   *ExitStatus `json:"exit,omitempty"`
}

// Stream ids in stdcopy frame headers.
const (
	StreamStdin  = 0
	StreamStdout = 1
	StreamStderr = 2
)

// Frame returns p wrapped in Docker's stdcopy header: stream byte, three
// zero bytes, big-endian uint32 length.
func Frame(stream byte, p []byte) []byte {
	b := make([]byte, 8+len(p))
	b[0] = stream
	putUint32(b[4:8], uint32(len(p)))
	copy(b[8:], p)
	return b
}

// Demux copies a stdcopy-framed stream from r to stdout and stderr (either
// may be nil to discard) until EOF. It is Docker's stdcopy.StdCopy.
func Demux(stdout, stderr io.Writer, r io.Reader) error {
	var hdr [8]byte
	buf := make([]byte, 32<<10)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		n := int(uint32(hdr[4])<<24 | uint32(hdr[5])<<16 | uint32(hdr[6])<<8 | uint32(hdr[7]))
		var w io.Writer
		switch hdr[0] {
		case StreamStdout, StreamStdin:
			w = stdout
		case StreamStderr:
			w = stderr
		default:
			return errBadFrame(hdr[0])
		}
		if w == nil {
			w = io.Discard
		}
		for n > 0 {
			k := min(n, len(buf))
			if _, err := io.ReadFull(r, buf[:k]); err != nil {
				return err
			}
			if _, err := w.Write(buf[:k]); err != nil {
				return err
			}
			n -= k
		}
	}
}

type errBadFrame byte

func (e errBadFrame) Error() string {
	return "stdcopy: bad stream id " + strconv.Itoa(int(e)) + " in frame header"
}

// SockName, ExitName and PidName are the shim's files in the bundle.
var (
	SockName = names.Sock
	ExitName = names.Exit
	PidName  = names.Pid
)

// putUint32 is binary.BigEndian.PutUint32; encoding/binary pulls reflect
// into the shim.
func putUint32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}
