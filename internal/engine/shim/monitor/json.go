package monitor

import (
	"unicode/utf8"
	"unsafe"

	"github.com/berth/berth/internal/engine/logs/crilog"
)

// A small JSON reader and writer for the few shapes the monitor handles:
// the request line, the answer line, exit.json and config.json's
// linux.cgroupsPath. encoding/json (with reflect and fmt) would add about a
// megabyte to every shim's RSS. The shapes are package wire's; the tests
// check them against encoding/json and wire's types.

// request is wire.Request.
type request struct {
	cmd                   string
	stdin, stdout, stderr bool
	height, width         uint16
}

// response is wire.Response.
type response struct {
	err    string
	pid    int
	status string
	tty    bool
	exit   *exitStatus
}

// exitStatus is wire.ExitStatus.
type exitStatus struct {
	code int
	sec  int64 // exitedAt, UTC
	nsec int32
	oom  bool
}

// appendString appends s as a JSON string, escaped as encoding/json does.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

func appendExit(b []byte, es *exitStatus) []byte {
	b = append(b, `{"exitCode":`...)
	b = crilog.AppendInt(b, int64(es.code))
	b = append(b, `,"exitedAt":"`...)
	b = crilog.AppendTimestamp(b, es.sec, es.nsec)
	b = append(b, `","oomKilled":`...)
	if es.oom {
		b = append(b, "true"...)
	} else {
		b = append(b, "false"...)
	}
	return append(b, '}')
}

func encodeResponse(r response) []byte {
	b := make([]byte, 0, 128)
	b = append(b, '{')
	sep := func() {
		if len(b) > 1 {
			b = append(b, ',')
		}
	}
	if r.err != "" {
		sep()
		b = appendString(append(b, `"error":`...), r.err)
	}
	if r.pid != 0 {
		sep()
		b = crilog.AppendInt(append(b, `"pid":`...), int64(r.pid))
	}
	if r.status != "" {
		sep()
		b = appendString(append(b, `"status":`...), r.status)
	}
	if r.tty {
		sep()
		b = append(b, `"tty":true`...)
	}
	if r.exit != nil {
		sep()
		b = appendExit(append(b, `"exit":`...), r.exit)
	}
	return append(b, '}', '\n')
}

var errJSON = errString("malformed JSON")

// scanner walks JSON text without building values.
type scanner struct {
	b     []byte
	i     int
	depth int
}

func (p *scanner) ws() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\n' || p.b[p.i] == '\r' || p.b[p.i] == '\t') {
		p.i++
	}
}

// end checks that only white space follows.
func (p *scanner) end() error {
	p.ws()
	if p.i != len(p.b) {
		return errJSON
	}
	return nil
}

func (p *scanner) peek() byte {
	p.ws()
	if p.i >= len(p.b) {
		return 0
	}
	return p.b[p.i]
}

func (p *scanner) lit(s string) error {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return errJSON
	}
	p.i += len(s)
	return nil
}

// skip consumes one value of any kind.
func (p *scanner) skip() error {
	switch c := p.peek(); {
	case c == '{':
		return p.object(func(string) error { return p.skip() })
	case c == '[':
		return p.array()
	case c == '"':
		_, err := p.rawStr()
		return err
	case c == 't':
		return p.lit("true")
	case c == 'f':
		return p.lit("false")
	case c == 'n':
		return p.lit("null")
	case c == '-' || (c >= '0' && c <= '9'):
		j := numberEnd(p.b, p.i)
		if j < 0 {
			return errJSON
		}
		p.i = j
		return nil
	}
	return errJSON
}

// object consumes an object, calling field for each key with the scanner
// at its value, which field must consume. Keys are matched exactly (not
// case-insensitively as encoding/json does); field must not keep the key.
func (p *scanner) object(field func(key string) error) error {
	if p.peek() != '{' {
		return errJSON
	}
	if p.depth++; p.depth > 100 {
		return errJSON
	}
	defer func() { p.depth-- }()
	p.i++
	if p.peek() == '}' {
		p.i++
		return nil
	}
	for {
		if p.peek() != '"' {
			return errJSON
		}
		start := p.i
		k, err := p.rawStr()
		if err != nil {
			return err
		}
		if indexByte(p.b[start:p.i], '\\') >= 0 {
			end := p.i
			p.i = start
			if k, err = p.str(); err != nil {
				return err
			}
			p.i = end
		}
		if p.peek() != ':' {
			return errJSON
		}
		p.i++
		if err := field(k); err != nil {
			return err
		}
		switch p.peek() {
		case ',':
			p.i++
		case '}':
			p.i++
			return nil
		default:
			return errJSON
		}
	}
}

func (p *scanner) array() error {
	if p.depth++; p.depth > 100 {
		return errJSON
	}
	defer func() { p.depth-- }()
	p.i++ // [
	if p.peek() == ']' {
		p.i++
		return nil
	}
	for {
		if err := p.skip(); err != nil {
			return err
		}
		switch p.peek() {
		case ',':
			p.i++
		case ']':
			p.i++
			return nil
		default:
			return errJSON
		}
	}
}

func (p *scanner) boolean() (bool, error) {
	switch p.peek() {
	case 't':
		return true, p.lit("true")
	case 'f':
		return false, p.lit("false")
	case 'n':
		return false, p.lit("null")
	}
	return false, errJSON
}

// size reads a terminal dimension: an integer in 0…65535 (null is 0).
func (p *scanner) size() (uint16, error) {
	if p.peek() == 'n' {
		return 0, p.lit("null")
	}
	j := numberEnd(p.b, p.i)
	if j < 0 {
		return 0, errJSON
	}
	n, ok := parseUint(string(p.b[p.i:j]))
	if !ok || n > 65535 {
		return 0, errString("terminal size " + string(p.b[p.i:j]) + " is not an integer in 0…65535")
	}
	p.i = j
	return uint16(n), nil
}

// stringOrNull reads a string value (null is "").
func (p *scanner) stringOrNull() (string, error) {
	if p.peek() == 'n' {
		return "", p.lit("null")
	}
	if p.peek() != '"' {
		return "", errJSON
	}
	return p.str()
}

// rawStr consumes a string and returns the text between its quotes,
// escapes undecoded, without allocating.
func (p *scanner) rawStr() (string, error) {
	start := p.i
	p.i++ // "
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return unsafeString(p.b[start+1 : p.i-1]), nil
		case c == '\\':
			p.i++
			if p.i >= len(p.b) {
				return "", errJSON
			}
			switch p.b[p.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i++
			case 'u':
				if _, ok := hex4(p.b, p.i+1); !ok {
					return "", errJSON
				}
				p.i += 5
			default:
				return "", errJSON
			}
		case c < 0x20:
			return "", errJSON
		default:
			p.i++
		}
	}
	return "", errJSON
}

func (p *scanner) str() (string, error) {
	p.i++ // "
	var out []byte
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return string(out), nil
		case c == '\\':
			if p.i+1 >= len(p.b) {
				return "", errJSON
			}
			e := p.b[p.i+1]
			p.i += 2
			switch e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, ok := hex4(p.b, p.i)
				if !ok {
					return "", errJSON
				}
				p.i += 4
				if r >= 0xd800 && r < 0xdc00 && p.i+6 <= len(p.b) && p.b[p.i] == '\\' && p.b[p.i+1] == 'u' {
					if r2, ok := hex4(p.b, p.i+2); ok && r2 >= 0xdc00 && r2 < 0xe000 {
						r = (r-0xd800)<<10 | (r2 - 0xdc00) + 0x10000
						p.i += 6
					}
				}
				out = utf8.AppendRune(out, r)
			default:
				return "", errJSON
			}
		case c < 0x20:
			return "", errJSON
		case c < utf8.RuneSelf:
			out = append(out, c)
			p.i++
		default:
			r, size := utf8.DecodeRune(p.b[p.i:])
			out = utf8.AppendRune(out, r)
			p.i += size
		}
	}
	return "", errJSON
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// numberEnd returns the end of the JSON number starting at i, or -1:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func numberEnd(b []byte, i int) int {
	digits := func() bool {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > start
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return -1
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return -1
		}
	}
	return i
}

// parseRequest decodes a request line. Unknown fields are skipped, as
// encoding/json does.
func parseRequest(line []byte) (request, error) {
	var r request
	p := &scanner{b: line}
	if p.peek() != '{' {
		return r, errString("request is not a JSON object")
	}
	err := p.object(func(k string) error {
		var err error
		switch k {
		case "cmd":
			r.cmd, err = p.stringOrNull()
		case "stdin":
			r.stdin, err = p.boolean()
		case "stdout":
			r.stdout, err = p.boolean()
		case "stderr":
			r.stderr, err = p.boolean()
		case "height":
			r.height, err = p.size()
		case "width":
			r.width, err = p.size()
		default:
			err = p.skip()
		}
		return err
	})
	if err == nil {
		err = p.end()
	}
	if err != nil {
		return request{}, err
	}
	return r, nil
}

// unsafeString views b as a string; b must not change while it is used.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
