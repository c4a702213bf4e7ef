package build

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/berth/berth/internal/errdefs"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
)

func TestApplyChanges(t *testing.T) {
	var img dockerspec.DockerOCIImage
	img.Config.Env = []string{"PATH=/bin", "APP=/srv"}
	img.Config.Cmd = []string{"sh"}
	img.Config.Entrypoint = []string{"/old"}
	img.Config.Labels = map[string]string{"a": "1"}
	img.History = nil
	err := ApplyChanges(&img, []string{
		`CMD ["cat", "/x"]`,
		`ENTRYPOINT []`,
		`ENV GREETING=hi MORE="a b"`,
		`EXPOSE 80 53/udp`,
		`LABEL b=2`,
		`USER nobody`,
		`VOLUME /data`,
		`WORKDIR $APP/sub`,
		`WORKDIR rel`,
		`STOPSIGNAL SIGINT`,
		`ONBUILD RUN echo hi`,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := img.Config
	check := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", what, got, want)
		}
	}
	// ENTRYPOINT after CMD in the same commit keeps that CMD, as in a build.
	check("Cmd", c.Cmd, []string{"cat", "/x"})
	check("Entrypoint", c.Entrypoint, []string(nil))
	check("Env", c.Env, []string{"PATH=/bin", "APP=/srv", "GREETING=hi", "MORE=a b"})
	check("ExposedPorts", c.ExposedPorts, map[string]struct{}{"80/tcp": {}, "53/udp": {}})
	check("Labels", c.Labels, map[string]string{"a": "1", "b": "2"})
	check("User", c.User, "nobody")
	check("Volumes", c.Volumes, map[string]struct{}{"/data": {}})
	check("WorkingDir", c.WorkingDir, "/srv/sub/rel")
	check("StopSignal", c.StopSignal, "SIGINT")
	check("OnBuild", c.OnBuild, []string{"RUN echo hi"})
	if len(img.History) != 0 || img.Created != nil {
		t.Errorf("changes added history %v / created %v", img.History, img.Created)
	}

	// Shell form runs in /bin/sh -c; an ENTRYPOINT alone resets CMD.
	var img2 dockerspec.DockerOCIImage
	img2.Config.Cmd = []string{"sh"}
	if err := ApplyChanges(&img2, []string{"ENTRYPOINT top -b"}); err != nil {
		t.Fatal(err)
	}
	check("Entrypoint (shell form)", img2.Config.Entrypoint, []string{"/bin/sh", "-c", "top -b"})
	check("Cmd after ENTRYPOINT", img2.Config.Cmd, []string(nil))
}

func TestApplyChangesRefuses(t *testing.T) {
	for _, bad := range []string{
		"RUN echo hi",        // not a commit instruction
		"FROM busybox",       // neither
		"BOGUS x",            // unknown
		"EXPOSE 99999",       // a bad port
		"STOPSIGNAL NOPE",    // a bad signal
		"ENV",                // no arguments
		`CMD ["unterminated`, // JSON that is not: Docker takes it as shell form, so it is fine
	} {
		var img dockerspec.DockerOCIImage
		img.Config.Env = []string{"A=1"}
		err := ApplyChanges(&img, []string{bad})
		if strings.HasPrefix(bad, "CMD") {
			if err != nil {
				t.Errorf("%q: %v", bad, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%q: no error", bad)
			continue
		}
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: %v is not an invalid-argument error", bad, err)
		}
		if !strings.Contains(err.Error(), strings.Fields(bad)[0]) {
			t.Errorf("%q: error %q does not name the instruction", bad, err)
		}
		if !reflect.DeepEqual(img.Config.Env, []string{"A=1"}) {
			t.Errorf("%q: config changed on failure: %v", bad, img.Config.Env)
		}
	}
}
