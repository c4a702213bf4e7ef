// Package lazyre compiles a package-level regular expression on its first
// use instead of at program start.
//
// The berth CLI and the engine daemon are one binary, so every package
// initialiser runs before every CLI command. regexp.MustCompile at package
// level cost 0.1–0.25 ms each for patterns with counted repetitions such as
// {0,127} (GODEBUG=inittrace=1), paid by `berth run` even when the pattern
// is never used.
package lazyre

import (
	"regexp"
	"sync"
)

// Regexp is a regular expression compiled on first use. The pattern must
// be valid: an invalid one panics at first use, as regexp.MustCompile does
// at start.
type Regexp struct {
	expr string
	once sync.Once
	re   *regexp.Regexp
}

// New returns expr, to be compiled on first use.
func New(expr string) *Regexp { return &Regexp{expr: expr} }

// Regexp returns the compiled expression.
func (r *Regexp) Regexp() *regexp.Regexp {
	r.once.Do(func() { r.re = regexp.MustCompile(r.expr) })
	return r.re
}

// MatchString reports whether s contains a match of the expression.
func (r *Regexp) MatchString(s string) bool { return r.Regexp().MatchString(s) }

// FindStringSubmatch is regexp.Regexp.FindStringSubmatch.
func (r *Regexp) FindStringSubmatch(s string) []string { return r.Regexp().FindStringSubmatch(s) }

// ReplaceAllStringFunc is regexp.Regexp.ReplaceAllStringFunc.
func (r *Regexp) ReplaceAllStringFunc(src string, repl func(string) string) string {
	return r.Regexp().ReplaceAllStringFunc(src, repl)
}

// String returns the source text of the expression.
func (r *Regexp) String() string { return r.expr }
