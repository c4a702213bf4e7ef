package build

import (
	"context"
	"io"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// FuzzDockerfile feeds arbitrary Dockerfiles (and a build argument)
// through parsing, instruction conversion, ARG resolution and variable
// expansion, and runs every metadata instruction: none may panic, and a
// failure must come back as an error naming the Dockerfile.
func FuzzDockerfile(f *testing.F) {
	for _, seed := range []string{
		"FROM busybox\nRUN echo hi\n",
		"ARG A=1\nFROM x:${A} AS b\nENV B=${A:-d} C=\"$B q\"\nLABEL k=\"v $C\"\nEXPOSE ${P:-80}/udp 1-3\n",
		"FROM scratch\nCOPY --from=0 --chown=a:b --chmod=755 a* /d/\nADD http://x/y /z\n",
		"FROM scratch\nRUN <<EOF\necho ${X}\nEOF\nCOPY <<EOF /f\n$A ${A:?err}\nEOF\n",
		"# escape=`\nFROM scratch\nWORKDIR c:\\x`\n  y\nSHELL [\"a\",\"b\"]\nCMD x\nENTRYPOINT []\n",
		"FROM scratch\nONBUILD RUN x\nHEALTHCHECK --interval=1s CMD y\nSTOPSIGNAL 9\nVOLUME /a /b\nUSER ${U}:g\n",
		"FROM a\nARG X=${Y} Y=${X}\nENV ${X}=1\nMAINTAINER m\n",
	} {
		f.Add(seed, "v")
	}
	e := newTestEnv(f)
	f.Fuzz(func(t *testing.T, data, arg string) {
		df, err := parseDockerfile("Dockerfile", []byte(data))
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("parse error of type %T: %v", err, err)
			}
			return
		}
		j := &job{b: e.b, ctx: context.Background(), opts: Options{NoCache: true, BuildArgs: map[string]*string{"A": &arg, "X": nil}},
			df: df, out: io.Discard, lex: shell.NewLex(df.escape), results: map[int]*state{}, building: map[int]bool{}, usedArgs: map[string]bool{}}
		if err := j.resolveMetaArgs(); err != nil {
			return
		}
		for _, s := range df.stages {
			j.baseRef(s)
			st := &state{stage: s, img: dockerspec.DockerOCIImage{Image: ocispec.Image{RootFS: ocispec.RootFS{Type: "layers"}}}}
			for _, c := range s.cmds {
				switch c.(type) {
				case *instructions.RunCommand, *instructions.CopyCommand, *instructions.AddCommand, *instructions.WorkdirCommand:
					// These touch file systems: expansion only.
					j.expand(st, c)
				default:
					if err := j.dispatch(st, c); err != nil {
						j.stepError(c, err)
					}
				}
			}
			st.bytes()
		}
	})
}
