package build

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/berth/berth/internal/errdefs"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// dockerfile is a parsed Dockerfile: its stages and the ARGs before the
// first FROM.
type dockerfile struct {
	name     string // as error messages show it, e.g. "Dockerfile"
	escape   rune
	metaArgs []*instructions.ArgCommand
	metaLine []int
	stages   []*stage
	warnings []string
}

// stage is one FROM and the instructions that follow it.
type stage struct {
	index    int
	name     string // lower case; "" when unnamed
	base     string // as written, before expansion
	platform string // --platform, before expansion
	source   string // the FROM line
	line     int
	cmds     []instructions.Command
}

// Error is a build failure at one Dockerfile instruction. Its message is
// "Dockerfile:LINE: MESSAGE", as editors and `docker build` users expect.
type Error struct {
	File string
	Line int // 0 when the error has no line
	Err  error
	// Code is the exit status of a failed RUN (0 otherwise).
	Code int
	// Output is the tail of a failed RUN's output, for clients that did
	// not see it stream by (quiet builds).
	Output string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Err.Error())
	}
	return fmt.Sprintf("%s: %s", e.File, e.Err.Error())
}

func (e *Error) Unwrap() error { return e.Err }

func lineOf(err error) int {
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
		return le.Locations[0][0].Start.Line
	}
	return 0
}

// userError strips buildkit's location wrapper (the line goes in front)
// and marks the error as the user's.
func userError(file string, line int, err error) *Error {
	if l := lineOf(err); l > 0 && line == 0 {
		line = l
	}
	msg := err.Error()
	var le *parser.LocationError
	if errors.As(err, &le) && le.Unwrap() != nil {
		msg = le.Unwrap().Error()
	}
	return &Error{File: file, Line: line, Err: fmt.Errorf("%s: %w", msg, errdefs.ErrInvalidArgument)}
}

// parseDockerfile parses b with BuildKit's parser and instruction
// converter. Errors name the file and line.
func parseDockerfile(name string, b []byte) (*dockerfile, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, &Error{File: name, Err: fmt.Errorf("the Dockerfile (%s) cannot be empty: %w", name, errdefs.ErrInvalidArgument)}
	}
	res, err := parser.Parse(bytes.NewReader(b))
	if err != nil {
		return nil, userError(name, 0, err)
	}
	df := &dockerfile{name: name, escape: res.EscapeToken}
	for _, w := range res.Warnings {
		line := 0
		if w.Location != nil {
			line = w.Location.Start.Line
		}
		df.warnings = append(df.warnings, fmt.Sprintf("%s:%d: %s", name, line, w.Short))
	}
	for _, n := range res.AST.Children {
		v, err := instructions.ParseInstructionWithLinter(n, nil)
		if err != nil {
			return nil, userError(name, n.StartLine, err)
		}
		switch c := v.(type) {
		case *instructions.Stage:
			df.stages = append(df.stages, &stage{index: len(df.stages), name: c.Name, base: c.BaseName,
				platform: c.Platform, source: c.SourceCode, line: n.StartLine})
		case *instructions.ArgCommand:
			if len(df.stages) == 0 {
				df.metaArgs = append(df.metaArgs, c)
				df.metaLine = append(df.metaLine, n.StartLine)
				continue
			}
			df.stages[len(df.stages)-1].cmds = append(df.stages[len(df.stages)-1].cmds, c)
		case instructions.Command:
			if len(df.stages) == 0 {
				return nil, &Error{File: name, Line: n.StartLine, Err: fmt.Errorf("%s before FROM: a Dockerfile must start with FROM (only ARG may come before it): %w",
					strings.ToUpper(c.Name()), errdefs.ErrInvalidArgument)}
			}
			df.stages[len(df.stages)-1].cmds = append(df.stages[len(df.stages)-1].cmds, c)
		default:
			return nil, &Error{File: name, Line: n.StartLine, Err: fmt.Errorf("unexpected instruction %q: %w", n.Value, errdefs.ErrInvalidArgument)}
		}
	}
	if len(df.stages) == 0 {
		return nil, &Error{File: name, Err: fmt.Errorf("no FROM instruction: a Dockerfile must have at least one stage: %w", errdefs.ErrInvalidArgument)}
	}
	for i, s := range df.stages {
		if s.name == "" {
			continue
		}
		for _, o := range df.stages[:i] {
			if o.name == s.name {
				return nil, &Error{File: name, Line: s.line, Err: fmt.Errorf("duplicate stage name %q (first at line %d): %w", s.name, o.line, errdefs.ErrInvalidArgument)}
			}
		}
	}
	return df, nil
}

// cmdLine is the first line of an instruction.
func cmdLine(c instructions.Command) int {
	if loc := c.Location(); len(loc) > 0 {
		return loc[0].Start.Line
	}
	return 0
}

// cmdText is an instruction as written (its first line for heredocs).
func cmdText(c instructions.Command) string {
	if s, ok := c.(fmt.Stringer); ok {
		t := s.String()
		if i := strings.IndexByte(t, '\n'); i >= 0 {
			t = t[:i]
		}
		return t
	}
	return strings.ToUpper(c.Name())
}

// stageByRef finds the stage a FROM or COPY --from names among the
// stages before before: by name (case-insensitive) or index.
func (df *dockerfile) stageByRef(ref string, before int) (*stage, bool) {
	l := strings.ToLower(ref)
	for _, s := range df.stages[:before] {
		if s.name != "" && s.name == l {
			return s, true
		}
	}
	if n, err := strconv.Atoi(ref); err == nil && n >= 0 && n < before {
		return df.stages[n], true
	}
	return nil, false
}

// mapEnv is a shell.EnvGetter over a map with ordered keys.
type mapEnv struct {
	keys []string
	m    map[string]string
}

func (e *mapEnv) Get(k string) (string, bool) { v, ok := e.m[k]; return v, ok }
func (e *mapEnv) Keys() []string              { return e.keys }

func newMapEnv() *mapEnv { return &mapEnv{m: map[string]string{}} }

func (e *mapEnv) set(k, v string) {
	if _, ok := e.m[k]; !ok {
		e.keys = append(e.keys, k)
	}
	e.m[k] = v
}

var _ shell.EnvGetter = (*mapEnv)(nil)

func expandWord(lex *shell.Lex, word string, env shell.EnvGetter) (string, error) {
	s, _, err := lex.ProcessWord(word, env)
	return s, err
}
