package build

import (
	"fmt"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
)

// commitCommands are the instructions docker commit --change takes
// (Docker's validCommitCommands).
var commitCommands = map[string]bool{
	"cmd": true, "entrypoint": true, "env": true, "expose": true, "healthcheck": true, "label": true,
	"onbuild": true, "stopsignal": true, "user": true, "volume": true, "workdir": true,
}

// ApplyChanges applies docker commit's --change instructions, one
// Dockerfile instruction each, to img's config, parsed and dispatched as
// a build does (variables expand against the config's ENV, a shell-form
// CMD runs in its SHELL, ENTRYPOINT resets CMD unless a CHANGE set it).
// Only the config changes: WORKDIR creates nothing and no history entry
// is added. An instruction commit does not take, or a malformed one, is
// an errdefs.ErrInvalidArgument naming it; img is then unchanged.
func ApplyChanges(img *dockerspec.DockerOCIImage, changes []string) error {
	if len(changes) == 0 {
		return nil
	}
	res, err := parser.Parse(strings.NewReader(strings.Join(changes, "\n")))
	if err != nil {
		return invalidf("--change %q: %v", strings.Join(changes, "\n"), err)
	}
	j := &job{opts: Options{NoCache: true}, df: &dockerfile{name: "--change", escape: res.EscapeToken},
		lex: shell.NewLex(res.EscapeToken)}
	st := &state{img: *img}
	st.img.Config.Env = append([]string(nil), img.Config.Env...)
	st.img.Config.OnBuild = append([]string(nil), img.Config.OnBuild...)
	st.img.Config.Labels = cloneSet(img.Config.Labels)
	st.img.Config.ExposedPorts = cloneSet(img.Config.ExposedPorts)
	st.img.Config.Volumes = cloneSet(img.Config.Volumes)
	for _, n := range res.AST.Children {
		if !commitCommands[strings.ToLower(n.Value)] {
			return invalidf("--change %q: %s is not a valid change command (want one of CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)",
				n.Original, strings.ToUpper(n.Value))
		}
		v, err := instructions.ParseInstructionWithLinter(n, nil)
		if err != nil {
			return invalidf("--change %q: %v", n.Original, err)
		}
		c, ok := v.(instructions.Command)
		if !ok {
			return invalidf("--change %q: not an instruction", n.Original)
		}
		if wd, ok := c.(*instructions.WorkdirCommand); ok {
			if err := j.expand(st, wd); err != nil {
				return fmt.Errorf("--change %q: %w", n.Original, err)
			}
			st.img.Config.WorkingDir = absWorkdir(st.img.Config.WorkingDir, wd.Path)
			continue
		}
		if err := j.dispatch(st, c); err != nil {
			return fmt.Errorf("--change %q: %w", n.Original, err)
		}
	}
	history, created := img.History, img.Created
	*img = st.img
	img.History, img.Created = history, created
	return nil
}

func cloneSet[V any](m map[string]V) map[string]V {
	if m == nil {
		return nil
	}
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
