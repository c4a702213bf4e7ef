package apiserver

import (
	"encoding/json"
	"strings"
	"testing"
)

// cronJobBody is a CronJob with spec fields replaced by mod (JSON merged
// at the spec level).
func cronJobBody(t *testing.T, name string, spec map[string]any) map[string]any {
	t.Helper()
	s := map[string]any{
		"schedule": "*/5 * * * *",
		"jobTemplate": map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"restartPolicy": "OnFailure", "containers": []any{map[string]any{"name": "c", "image": "busybox"}},
		}}}},
	}
	for k, v := range spec {
		if v == nil {
			delete(s, k)
		} else {
			s[k] = v
		}
	}
	return map[string]any{"apiVersion": "batch/v1", "kind": "CronJob", "metadata": map[string]any{"name": name}, "spec": s}
}

// A CronJob gets Kubernetes' defaults; bad schedules, zones, policies and
// limits are refused with 422 naming the field.
func TestCronJobValidation(t *testing.T) {
	ns := newNS(t)
	base := "/apis/batch/v1/namespaces/" + ns + "/cronjobs"
	r := do(t, "POST", base, cronJobBody(t, "ok", nil))
	mustCode(t, r, 201)
	for path, want := range map[string]string{
		"spec.concurrencyPolicy": "Allow", "spec.suspend": "false",
		"spec.successfulJobsHistoryLimit": "3", "spec.failedJobsHistoryLimit": "1",
	} {
		if got := r.str(path); got != want {
			t.Errorf("default %s: got %q, want %q", path, got, want)
		}
	}
	for _, ok := range []map[string]any{
		{"schedule": "@hourly"},
		{"schedule": "@every 90s"},
		{"schedule": "30 6-16/4 * JAN-MAR mon-fri"},
		{"schedule": "0 9 * * *", "timeZone": "Europe/Berlin"},
		{"concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 0, "successfulJobsHistoryLimit": 0},
	} {
		b := cronJobBody(t, "good-"+randSuffix(), ok)
		if r := do(t, "POST", base, b); r.code != 201 {
			j, _ := json.Marshal(ok)
			t.Errorf("%s: got HTTP %d, want 201: %s", j, r.code, r.body)
		}
	}
	cases := []struct {
		name  string
		spec  map[string]any
		field string
		says  string
	}{
		{"no schedule", map[string]any{"schedule": nil}, "spec.schedule", "Required"},
		{"six fields", map[string]any{"schedule": "0 * * * * *"}, "spec.schedule", "found 6"},
		{"minute 60", map[string]any{"schedule": "60 * * * *"}, "spec.schedule", "minute"},
		{"bad descriptor", map[string]any{"schedule": "@sometimes"}, "spec.schedule", "descriptor"},
		{"CRON_TZ", map[string]any{"schedule": "CRON_TZ=UTC 0 * * * *"}, "spec.schedule", "use timeZone field instead"},
		{"TZ and timeZone", map[string]any{"schedule": "TZ=UTC 0 * * * *", "timeZone": "UTC"}, "spec.schedule", "cannot use both"},
		{"unknown zone", map[string]any{"timeZone": "Mars/Olympus"}, "spec.timeZone", "unknown time zone"},
		{"Local zone", map[string]any{"timeZone": "Local"}, "spec.timeZone", "explicit time zone"},
		{"empty zone", map[string]any{"timeZone": ""}, "spec.timeZone", "non-empty"},
		{"bad policy", map[string]any{"concurrencyPolicy": "Sometimes"}, "spec.concurrencyPolicy", "Unsupported value"},
		{"negative deadline", map[string]any{"startingDeadlineSeconds": -1}, "spec.startingDeadlineSeconds", "greater than or equal to 0"},
		{"negative history", map[string]any{"failedJobsHistoryLimit": -1}, "spec.failedJobsHistoryLimit", "greater than or equal to 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, "POST", base, cronJobBody(t, "bad", tc.spec))
			if r.code != 422 {
				t.Fatalf("got HTTP %d, want 422: %s", r.code, r.body)
			}
			if !strings.Contains(string(r.body), `"field":"`+tc.field+`"`) || !strings.Contains(string(r.body), tc.says) {
				t.Errorf("got %s, want a cause on %s saying %q", r.body, tc.field, tc.says)
			}
		})
	}
	// A restartPolicy a Job refuses is refused in the template too.
	b := cronJobBody(t, "always", nil)
	b["spec"].(map[string]any)["jobTemplate"].(map[string]any)["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["restartPolicy"] = "Always"
	if r := do(t, "POST", base, b); r.code != 422 || !strings.Contains(string(r.body), "spec.jobTemplate.spec.template.spec.restartPolicy") {
		t.Errorf("restartPolicy Always: got HTTP %d %s, want 422 on spec.jobTemplate.spec.template.spec.restartPolicy", r.code, r.body)
	}
	// An update is validated too.
	mustCode(t, do(t, "PATCH", base+"/ok", `{"spec":{"schedule":"not a schedule"}}`, withCT("application/merge-patch+json")), 422)
}
