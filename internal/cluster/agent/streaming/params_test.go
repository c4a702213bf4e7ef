package streaming

import (
	"net/http/httptest"
	"net/url"
	"testing"
)

// FuzzParams feeds arbitrary query strings to the log and exec parameter
// parsers: they answer or refuse, never panic.
func FuzzParams(f *testing.F) {
	for _, s := range []string{"follow&tailLines=3", "sinceSeconds=5&sinceTime=2024-01-02T15:04:05Z", "limitBytes=0", "command=ls&stdin=true&tty=1", "stdout=maybe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		if o, err := parseLogOptions(q); err == nil && o.limitBytes < 0 {
			t.Errorf("negative limitBytes accepted: %q", raw)
		}
		r := httptest.NewRequest("GET", "/exec/a/b/c?"+q.Encode(), nil)
		if o, err := parseStreamOpts(r); err == nil && !o.stdin && !o.stdout && !o.stderr {
			t.Errorf("no stream accepted: %q", raw)
		}
	})
}
