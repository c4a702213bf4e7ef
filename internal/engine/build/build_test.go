package build

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/berth/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
)

func TestParseErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct {
		name, df, want string
	}{
		{"unknown", "FROM scratch\nENV A=1\nFOOBAR x\n", "Dockerfile:3: unknown instruction: FOOBAR"},
		{"empty", "\n\n", "Dockerfile: the Dockerfile (Dockerfile) cannot be empty"},
		{"before from", "ENV A=1\nFROM scratch\n", "Dockerfile:1: ENV before FROM"},
		{"no from", "ARG A=1\n", "no FROM instruction"},
		{"duplicate stage", "FROM scratch AS a\nFROM scratch AS a\n", "Dockerfile:2: duplicate stage name \"a\""},
		{"bad stage name", "FROM scratch AS 1x\n", "Dockerfile:1: invalid name for build stage"},
		{"env without value", "FROM scratch\nENV\n", "Dockerfile:2: ENV requires at least one argument"},
		{"copy without dest", "FROM scratch\n\nCOPY a\n", "Dockerfile:3: COPY requires at least two arguments"},
		{"bad healthcheck", "FROM scratch\nHEALTHCHECK FOO\n", "Dockerfile:2: Unknown type"},
		{"onbuild from", "FROM scratch\nONBUILD FROM x\n", "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseDockerfile("Dockerfile", []byte(tc.df))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("parse: got %v, want an error containing %q", err, tc.want)
			}
			if !errdefs.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("error class: %v, want invalid argument", err)
			}
		})
	}
}

func TestParseStages(t *testing.T) {
	df, err := parseDockerfile("Dockerfile", []byte("ARG V=1\nFROM busybox:${V} AS Build\nRUN x\nFROM build\nCOPY --from=0 a b\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(df.metaArgs) != 1 || len(df.stages) != 2 {
		t.Fatalf("got %d meta args and %d stages, want 1 and 2", len(df.metaArgs), len(df.stages))
	}
	if s := df.stages[0]; s.name != "build" || s.base != "busybox:${V}" || s.line != 2 || len(s.cmds) != 1 {
		t.Errorf("stage 0: %+v", s)
	}
	if s, ok := df.stageByRef("BUILD", 1); !ok || s.index != 0 {
		t.Errorf("stageByRef(BUILD) = %v, %v", s, ok)
	}
	if s, ok := df.stageByRef("0", 1); !ok || s.index != 0 {
		t.Errorf("stageByRef(0) = %v, %v", s, ok)
	}
	if _, ok := df.stageByRef("1", 1); ok {
		t.Error("stageByRef found a later stage")
	}
}

func TestCacheKey(t *testing.T) {
	a := cacheKey("sha256:x", []string{"ENV A=1"})
	if a != cacheKey("sha256:x", []string{"ENV A=1"}) {
		t.Error("cacheKey is not deterministic")
	}
	for _, other := range []digest.Digest{
		cacheKey("sha256:y", []string{"ENV A=1"}),
		cacheKey("sha256:x", []string{"ENV A=2"}),
		cacheKey("sha256:x", copyDescriptor{Name: "COPY", Files: []fileDesc{{Path: "a", Digest: "sha256:1"}}}),
		cacheKey("sha256:x", copyDescriptor{Name: "COPY", Files: []fileDesc{{Path: "a", Digest: "sha256:2"}}}),
	} {
		if other == a {
			t.Errorf("different inputs gave the same key %s", a)
		}
	}
	if a.Validate() != nil {
		t.Errorf("key %q is not a valid digest", a)
	}
}

// TestMetadataInstructions builds FROM scratch with metadata only (no
// layers, so no root needed) and checks Docker's rules for each.
func TestMetadataInstructions(t *testing.T) {
	e := newTestEnv(t)
	df := `ARG TAG=meta
FROM scratch
ARG TAG
ARG NAME=default
ARG FROMARG
ENV NAME=env-wins LIST="a b"
ENV COPYOF=${NAME}-${TAG} UNSET=${NOPE:-fallback}
LABEL version="1.0" who=$NAME
MAINTAINER someone
EXPOSE 80 8000-8001/udp
VOLUME ["/data", "/logs"]
USER 1000:1000
STOPSIGNAL SIGUSR1
SHELL ["/bin/bash", "-eu", "-c"]
CMD echo hi
ENTRYPOINT ["/entry"]
HEALTHCHECK --interval=5s --retries=2 CMD check
ONBUILD RUN echo triggered
`
	res, out := e.mustBuild(t, df, Options{Tags: []string{"meta:1"}, BuildArgs: map[string]*string{"NAME": ptr("arg"), "UNUSED": ptr("x")}})
	cfg := e.config(t, res.ID).Config
	env := strings.Join(cfg.Env, ",")
	if env != "NAME=env-wins,LIST=a b,COPYOF=env-wins-meta,UNSET=fallback" {
		t.Errorf("Env: %s", env)
	}
	if !reflect.DeepEqual(cfg.Labels, map[string]string{"version": "1.0", "who": "env-wins"}) {
		t.Errorf("Labels: %v", cfg.Labels)
	}
	var ports []string
	for p := range cfg.ExposedPorts {
		ports = append(ports, p)
	}
	if len(ports) != 3 || cfg.ExposedPorts["8001/udp"] != struct{}{} || cfg.ExposedPorts["80/tcp"] != struct{}{} {
		t.Errorf("ExposedPorts: %v", cfg.ExposedPorts)
	}
	if len(cfg.Volumes) != 2 || cfg.User != "1000:1000" || cfg.StopSignal != "SIGUSR1" {
		t.Errorf("Volumes %v, User %q, StopSignal %q", cfg.Volumes, cfg.User, cfg.StopSignal)
	}
	// CMD's shell form runs in SHELL; a later ENTRYPOINT keeps a CMD set
	// in the same stage.
	if got := strings.Join(cfg.Cmd, "|"); got != "/bin/bash|-eu|-c|echo hi" {
		t.Errorf("Cmd: %q", got)
	}
	if got := strings.Join(cfg.Entrypoint, "|"); got != "/entry" {
		t.Errorf("Entrypoint: %q", got)
	}
	raw, _ := e.images.Content().ReadAll(digest.Digest(res.ID))
	for _, want := range []string{`"Healthcheck":{"Test":["CMD-SHELL","check"],"Interval":5000000000,"Retries":2}`,
		`"OnBuild":["RUN echo triggered"]`, `"Shell":["/bin/bash","-eu","-c"]`, `"author":"someone"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("config lacks %s:\n%s", want, raw)
		}
	}
	img := e.config(t, res.ID)
	if len(img.History) != 13 || !img.History[0].EmptyLayer {
		t.Errorf("history: %d entries (want one per instruction but ARG), first %+v", len(img.History), img.History[0])
	}
	if !strings.Contains(out, "Step 17/17 : ONBUILD RUN echo triggered") || !strings.Contains(out, "Successfully tagged meta:1\n") {
		t.Errorf("output:\n%s", out)
	}
	if !strings.Contains(out, "[Warning] One or more build-args [UNUSED] were not consumed") {
		t.Errorf("no warning about the unused build arg:\n%s", out)
	}
}

func ptr(s string) *string { return &s }

func TestEntrypointResetsInheritedCmd(t *testing.T) {
	e := newTestEnv(t)
	e.mustBuild(t, "FROM scratch\nCMD [\"base-cmd\"]\n", Options{Tags: []string{"withcmd"}})
	res, _ := e.mustBuild(t, "FROM withcmd\nENTRYPOINT [\"/ep\"]\n", Options{})
	if cmd := e.config(t, res.ID).Config.Cmd; cmd != nil {
		t.Errorf("Cmd after ENTRYPOINT on a base with CMD: %v, want none (Docker resets it)", cmd)
	}
}

func TestCacheGivesTheSameImage(t *testing.T) {
	e := newTestEnv(t)
	df := "FROM scratch\nENV A=1\nLABEL b=2\nCMD [\"x\"]\n"
	first, out1 := e.mustBuild(t, df, Options{Tags: []string{"c:1"}})
	if strings.Contains(out1, "Using cache") {
		t.Errorf("first build used the cache:\n%s", out1)
	}
	second, out2 := e.mustBuild(t, df, Options{Tags: []string{"c:1"}})
	if second.ID != first.ID {
		t.Errorf("rebuild gave %s, want the same image %s", second.ID, first.ID)
	}
	if n := strings.Count(out2, " ---> Using cache\n"); n != 3 {
		t.Errorf("rebuild: %d cache hits, want 3:\n%s", n, out2)
	}
	// A change invalidates from that step on only.
	third, out3 := e.mustBuild(t, "FROM scratch\nENV A=1\nLABEL b=3\nCMD [\"x\"]\n", Options{})
	if third.ID == first.ID || strings.Count(out3, "Using cache") != 1 {
		t.Errorf("changed LABEL: id %s (first %s), output:\n%s", third.ID, first.ID, out3)
	}
	// --no-cache builds anew.
	fourth, out4 := e.mustBuild(t, df, Options{NoCache: true})
	if fourth.ID == first.ID || strings.Contains(out4, "Using cache") {
		t.Errorf("--no-cache: id %s (first %s), output:\n%s", fourth.ID, first.ID, out4)
	}
	// The cache survives a new Builder on the same directory (a daemon
	// restart).
	b2, err := New(e.b.cache.dir[:len(e.b.cache.dir)-len("/cache")], e.images, e.exec, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.b = b2
	fifth, _ := e.mustBuild(t, "FROM scratch\nENV A=1\nLABEL b=3\nCMD [\"x\"]\n", Options{})
	if fifth.ID != third.ID {
		t.Errorf("after a restart: %s, want the cached %s", fifth.ID, third.ID)
	}
}

func TestBuildArgs(t *testing.T) {
	e := newTestEnv(t)
	df := `ARG BASE=scratch
ARG GLOBAL=g
FROM ${BASE}
ARG GLOBAL
ARG LOCAL=l-${GLOBAL}
ARG NOVALUE
ENV OUT=${GLOBAL}/${LOCAL}/${NOVALUE:-none}/${TARGETARCH:-unset}
`
	res, _ := e.mustBuild(t, df, Options{})
	if env := e.config(t, res.ID).Config.Env; len(env) != 1 || env[0] != "OUT=g/l-g/none/unset" {
		t.Errorf("defaults: %v", env)
	}
	res, _ = e.mustBuild(t, df, Options{BuildArgs: map[string]*string{"GLOBAL": ptr("G"), "NOVALUE": ptr("v"), "LOCAL": nil}})
	if env := e.config(t, res.ID).Config.Env; len(env) != 1 || env[0] != "OUT=G/l-G/v/unset" {
		t.Errorf("overridden: %v", env)
	}
	res, _ = e.mustBuild(t, "FROM scratch\nARG TARGETARCH\nENV A=$TARGETARCH\n", Options{})
	if env := e.config(t, res.ID).Config.Env; len(env) != 1 || env[0] == "A=" {
		t.Errorf("TARGETARCH: %v", env)
	}
}

func TestTargetBuildsOnlyNeededStages(t *testing.T) {
	e := newTestEnv(t)
	df := `FROM scratch AS one
ENV ONE=1
FROM scratch AS unused
ENV UNUSED=1
FROM one AS two
ENV TWO=2
FROM scratch AS last
ENV LAST=1
`
	res, out := e.mustBuild(t, df, Options{Target: "two"})
	if strings.Contains(out, "UNUSED") || strings.Contains(out, "LAST") {
		t.Errorf("built stages the target does not need:\n%s", out)
	}
	if !strings.Contains(out, "Step 4/4 : ENV TWO=2") {
		t.Errorf("steps not numbered over the needed stages:\n%s", out)
	}
	if env := strings.Join(e.config(t, res.ID).Config.Env, ","); env != "ONE=1,TWO=2" {
		t.Errorf("Env of target two: %s", env)
	}
	if _, _, err := e.build(t, df, Options{Target: "nope"}); err == nil || !strings.Contains(err.Error(), "failed to reach build target nope") {
		t.Errorf("unknown target: %v", err)
	}
}

func TestOnbuildTriggersRunInChildBuilds(t *testing.T) {
	e := newTestEnv(t)
	e.mustBuild(t, "FROM scratch\nONBUILD ENV TRIGGERED=yes\nONBUILD LABEL from=trigger\n", Options{Tags: []string{"parent"}})
	res, out := e.mustBuild(t, "FROM parent\nENV CHILD=1\n", Options{})
	cfg := e.config(t, res.ID).Config
	if strings.Join(cfg.Env, ",") != "TRIGGERED=yes,CHILD=1" || cfg.Labels["from"] != "trigger" {
		t.Errorf("triggers not applied: Env %v Labels %v", cfg.Env, cfg.Labels)
	}
	if !strings.Contains(out, "# Executing 2 build triggers") {
		t.Errorf("output:\n%s", out)
	}
	raw, _ := e.images.Content().ReadAll(digest.Digest(res.ID))
	if strings.Contains(string(raw), "OnBuild") {
		t.Errorf("the child image keeps its parent's triggers: %s", raw)
	}
}

func TestBadInputStoresNothing(t *testing.T) {
	e := newTestEnv(t)
	before := len(e.images.List())
	for _, tc := range []struct{ df, want string }{
		{"FROM scratch\nENV A=1\nFOOBAR\n", "Dockerfile:3: unknown instruction: FOOBAR"},
		{"FROM nosuch:image\n", "Dockerfile:1: pull access denied for nosuch:image"},
		{"FROM scratch\nEXPOSE 0\n", "Dockerfile:2: EXPOSE 0: invalid port"},
		{"FROM scratch\nSTOPSIGNAL SIGNOPE\n", "Dockerfile:2: STOPSIGNAL SIGNOPE: unknown signal"},
		{"FROM scratch\n", "No image was generated"},
		{"FROM scratch\nRUN --mount=type=cache,target=/x true\n", "RUN --mount is not supported"},
	} {
		_, _, err := e.build(t, tc.df, Options{Tags: []string{"never:1"}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.df, err, tc.want)
		}
	}
	if _, _, err := e.build(t, "FROM scratch\nENV A=1\n", Options{Tags: []string{"Bad Tag"}}); err == nil {
		t.Error("an invalid tag was accepted")
	}
	if _, _, err := e.build(t, "FROM scratch\nENV A=1\n", Options{Dockerfile: "other/Dockerfile"}); err == nil || !strings.Contains(err.Error(), "Cannot locate specified Dockerfile: other/Dockerfile") {
		t.Errorf("missing -f: %v", err)
	}
	if n := len(e.images.List()); n != before {
		t.Errorf("failed builds stored %d images", n-before)
	}
	var be *Error
	_, _, err := e.build(t, "FROM scratch\nENV A=1\nFOOBAR\n", Options{})
	if !errors.As(err, &be) || be.Line != 3 || be.File != "Dockerfile" {
		t.Errorf("error %v: want a *build.Error at Dockerfile:3", err)
	}
}

func TestParsePorts(t *testing.T) {
	for in, want := range map[string]string{"80": "80/tcp", "53/UDP": "53/udp", "1-3/sctp": "1/sctp 2/sctp 3/sctp"} {
		got, err := parsePorts(in)
		if err != nil || strings.Join(got, " ") != want {
			t.Errorf("parsePorts(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "0", "70000", "5-3", "80/icmp", "127.0.0.1:80:80"} {
		if _, err := parsePorts(bad); err == nil {
			t.Errorf("parsePorts(%q) accepted", bad)
		}
	}
}
