package monitor

import (
	"errors"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/berth/berth/internal/engine/shim/wire"
)

// A small JSON reader and writer for the few shapes the monitor handles.
// encoding/json (with reflect and fmt) would add about a megabyte of mapped
// text to every shim's RSS.

// appendString appends s as a JSON string.
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
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

func appendExit(b []byte, es *wire.ExitStatus) []byte {
	b = append(b, `{"exitCode":`...)
	b = strconv.AppendInt(b, int64(es.ExitCode), 10)
	b = append(b, `,"exitedAt":`...)
	b = appendString(b, es.ExitedAt.Format(time.RFC3339Nano))
	b = append(b, `,"oomKilled":`...)
	b = strconv.AppendBool(b, es.OOMKilled)
	return append(b, '}')
}

func encodeResponse(r wire.Response) []byte {
	b := make([]byte, 0, 128)
	b = append(b, '{')
	sep := func() {
		if len(b) > 1 {
			b = append(b, ',')
		}
	}
	if r.Error != "" {
		sep()
		b = appendString(append(b, `"error":`...), r.Error)
	}
	if r.Pid != 0 {
		sep()
		b = strconv.AppendInt(append(b, `"pid":`...), int64(r.Pid), 10)
	}
	if r.Status != "" {
		sep()
		b = appendString(append(b, `"status":`...), r.Status)
	}
	if r.Tty {
		sep()
		b = append(b, `"tty":true`...)
	}
	if r.Exit != nil {
		sep()
		b = appendExit(append(b, `"exit":`...), r.Exit)
	}
	return append(b, '}', '\n')
}

var errJSON = errors.New("malformed JSON")

// parser decodes JSON into map[string]any, []any, string, float64, bool
// and nil.
type parser struct {
	b     []byte
	i     int
	depth int
}

func parseJSON(b []byte) (any, error) {
	p := &parser{b: b}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.i != len(p.b) {
		return nil, errJSON
	}
	return v, nil
}

func (p *parser) ws() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\n' || p.b[p.i] == '\r' || p.b[p.i] == '\t') {
		p.i++
	}
}

func (p *parser) lit(s string, v any) (any, error) {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return nil, errJSON
	}
	p.i += len(s)
	return v, nil
}

func (p *parser) value() (any, error) {
	p.ws()
	if p.i >= len(p.b) {
		return nil, errJSON
	}
	switch c := p.b[p.i]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		return p.str()
	case c == 't':
		return p.lit("true", true)
	case c == 'f':
		return p.lit("false", false)
	case c == 'n':
		return p.lit("null", nil)
	case c == '-' || (c >= '0' && c <= '9'):
		j := numberEnd(p.b, p.i)
		if j < 0 {
			return nil, errJSON
		}
		f, err := strconv.ParseFloat(string(p.b[p.i:j]), 64)
		if err != nil {
			return nil, errJSON
		}
		p.i = j
		return f, nil
	}
	return nil, errJSON
}

func (p *parser) object() (any, error) {
	if p.depth++; p.depth > 100 {
		return nil, errJSON
	}
	defer func() { p.depth-- }()
	p.i++ // {
	m := map[string]any{}
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return m, nil
	}
	for {
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return nil, errJSON
		}
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return nil, errJSON
		}
		p.i++
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		m[k] = v
		p.ws()
		if p.i >= len(p.b) {
			return nil, errJSON
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return m, nil
		default:
			return nil, errJSON
		}
	}
}

func (p *parser) array() (any, error) {
	if p.depth++; p.depth > 100 {
		return nil, errJSON
	}
	defer func() { p.depth-- }()
	p.i++ // [
	var a []any
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return a, nil
	}
	for {
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		p.ws()
		if p.i >= len(p.b) {
			return nil, errJSON
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return a, nil
		default:
			return nil, errJSON
		}
	}
}

func (p *parser) str() (string, error) {
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
				if p.i+4 > len(p.b) {
					return "", errJSON
				}
				n, err := strconv.ParseUint(string(p.b[p.i:p.i+4]), 16, 32)
				if err != nil {
					return "", errJSON
				}
				p.i += 4
				r := rune(n)
				// A surrogate pair.
				if r >= 0xd800 && r < 0xdc00 && p.i+6 <= len(p.b) && p.b[p.i] == '\\' && p.b[p.i+1] == 'u' {
					if n2, err := strconv.ParseUint(string(p.b[p.i+2:p.i+6]), 16, 32); err == nil && n2 >= 0xdc00 && n2 < 0xe000 {
						r = (r-0xd800)<<10 | (rune(n2) - 0xdc00) + 0x10000
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
			// Invalid UTF-8 becomes U+FFFD, as encoding/json does.
			r, size := utf8.DecodeRune(p.b[p.i:])
			out = utf8.AppendRune(out, r)
			p.i += size
		}
	}
	return "", errJSON
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

// parseRequest decodes a request line.
func parseRequest(line []byte) (wire.Request, error) {
	var r wire.Request
	v, err := parseJSON(line)
	if err != nil {
		return r, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return r, errors.New("request is not a JSON object")
	}
	r.Cmd, _ = m["cmd"].(string)
	r.Stdin, _ = m["stdin"].(bool)
	r.Stdout, _ = m["stdout"].(bool)
	r.Stderr, _ = m["stderr"].(bool)
	if h, ok := m["height"].(float64); ok && h >= 0 && h <= 65535 {
		r.Height = uint16(h)
	}
	if w, ok := m["width"].(float64); ok && w >= 0 && w <= 65535 {
		r.Width = uint16(w)
	}
	return r, nil
}

// cgroupsPathOf returns linux.cgroupsPath of an OCI config.json.
func cgroupsPathOf(config []byte) string {
	v, err := parseJSON(config)
	if err != nil {
		return ""
	}
	m, _ := v.(map[string]any)
	linux, _ := m["linux"].(map[string]any)
	p, _ := linux["cgroupsPath"].(string)
	return p
}
