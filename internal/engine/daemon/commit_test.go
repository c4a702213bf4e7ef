package daemon

import (
	"reflect"
	"testing"

	"github.com/berth/berth/internal/engine/api"
)

func TestMergeCommitConfig(t *testing.T) {
	ctr := api.Config{User: "app", Env: []string{"PATH=/bin", "A=ctr"}, Cmd: []string{"serve"}, Entrypoint: []string{"/init"},
		WorkingDir: "/srv", Labels: map[string]string{"l": "ctr", "k": "ctr"}, ExposedPorts: map[string]struct{}{"80/tcp": {}},
		StopSignal: "SIGINT"}
	if got := mergeCommitConfig(nil, ctr); !reflect.DeepEqual(got, ctr) {
		t.Errorf("no body: %+v", got)
	}
	// The body wins; the container fills what it leaves empty, as Docker's merge.
	got := mergeCommitConfig(&api.Config{Env: []string{"A=body"}, Cmd: []string{"other"}, Labels: map[string]string{"l": "body"},
		ExposedPorts: map[string]struct{}{"443/tcp": {}}}, ctr)
	want := api.Config{User: "app", Env: []string{"A=body", "PATH=/bin"}, Cmd: []string{"other"}, Entrypoint: []string{"/init"},
		WorkingDir: "/srv", Labels: map[string]string{"l": "body", "k": "ctr"},
		ExposedPorts: map[string]struct{}{"80/tcp": {}, "443/tcp": {}}, StopSignal: "SIGINT"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("merge:\n got %+v\nwant %+v", got, want)
	}
	// A body ENTRYPOINT keeps its own (empty) CMD.
	got = mergeCommitConfig(&api.Config{Entrypoint: []string{"/other"}}, ctr)
	if !reflect.DeepEqual(got.Entrypoint, []string{"/other"}) || got.Cmd != nil {
		t.Errorf("body entrypoint: %v %v", got.Entrypoint, got.Cmd)
	}
}
