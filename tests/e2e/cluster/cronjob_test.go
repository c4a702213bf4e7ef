package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestCronJob: a CronJob on the real server starts Jobs on its schedule
// ("@every 2s": no waiting for a whole minute), shows in kubectl's table,
// refuses a bad schedule with kubectl's usual error naming spec.schedule,
// instantiates by hand with `kubectl create job --from=cronjob/…`, sees
// its Job complete through the real Job controller, stops starting Jobs
// while suspended, and takes its Jobs along when deleted.
func TestCronJob(t *testing.T) {
	k := newKubectl(t, "kubectl", shared)
	ns := fmt.Sprintf("cron-%d", time.Now().UnixNano()%100000)
	k.ok(t, "create", "namespace", ns)
	defer k.run(t, "", "delete", "namespace", ns, "--wait=false")

	out, err := k.run(t, "", "create", "cronjob", "bad", "-n", ns, "--image=busybox", "--schedule=0 25 * * *")
	if err == nil || !strings.Contains(out, "spec.schedule: Invalid value") || !strings.Contains(out, "hour") {
		t.Errorf("bad schedule: got %v %q, want a refusal naming spec.schedule and the hour field", err, out)
	}

	start := time.Now()
	k.ok(t, "create", "cronjob", "tick", "-n", ns, "--image=busybox", "--schedule=@every 2s", "--", "true")
	var job string
	waitUntil(t, 20*time.Second, "the first scheduled job", func() bool {
		job = strings.TrimSpace(k.ok(t, "get", "jobs", "-n", ns, "-o", "name"))
		return job != ""
	})
	t.Logf("first job %s %.1fs after the CronJob was created", job, time.Since(start).Seconds())
	if !strings.HasPrefix(job, "job.batch/tick-") {
		t.Errorf("job name: got %q, want tick-<minutes>", job)
	}
	owner := k.ok(t, "get", job, "-n", ns, "-o", `jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {.metadata.annotations.batch\.kubernetes\.io/cronjob-scheduled-timestamp}`)
	if !strings.HasPrefix(owner, "CronJob/tick ") || len(owner) < len("CronJob/tick 2006-01-02T15:04:05Z") {
		t.Errorf("job owner and scheduled timestamp: got %q", owner)
	}
	waitUntil(t, 10*time.Second, "status.active and lastScheduleTime", func() bool {
		return k.ok(t, "get", "cronjob", "tick", "-n", ns, "-o", "jsonpath={.status.active[0].name} {.status.lastScheduleTime}") != " "
	})
	table := k.ok(t, "get", "cronjobs", "-n", ns)
	mustContain(t, table, "NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE", "tick", "@every 2s", "<none>", "false")
	mustContain(t, k.ok(t, "describe", "cronjob", "tick", "-n", ns), "SuccessfulCreate", "Active Jobs:")

	mustContain(t, k.ok(t, "create", "job", "by-hand", "-n", ns, "--from=cronjob/tick"), "job.batch/by-hand created")
	mustContain(t, k.ok(t, "get", "job", "by-hand", "-n", ns, "-o", "jsonpath={.metadata.annotations} {.metadata.ownerReferences[0].name} {.spec.template.spec.containers[0].command}"),
		`"cronjob.kubernetes.io/instantiate":"manual"`, " tick ", `["true"]`)

	// With the real Job controller and pods that succeed (the test stands
	// in for the nodes), a run completes: the CronJob sees it and records
	// lastSuccessfulTime.
	kubeletLoop(t, adminClient(t, shared), ns, func(*corev1.Pod) corev1.PodPhase { return corev1.PodSucceeded })
	waitUntil(t, 30*time.Second, "a run completed and seen", func() bool {
		return k.ok(t, "get", "cronjob", "tick", "-n", ns, "-o", "jsonpath={.status.lastSuccessfulTime}") != ""
	})
	mustContain(t, k.ok(t, "describe", "cronjob", "tick", "-n", ns), "SawCompletedJob")

	k.ok(t, "patch", "cronjob", "tick", "-n", ns, "-p", `{"spec":{"suspend":true}}`)
	mustContain(t, k.ok(t, "get", "cronjob", "tick", "-n", ns), "true")
	time.Sleep(time.Second) // a run in flight as the patch landed
	before := k.ok(t, "get", "cronjob", "tick", "-n", ns, "-o", "jsonpath={.status.lastScheduleTime}")
	time.Sleep(5 * time.Second)
	if after := k.ok(t, "get", "cronjob", "tick", "-n", ns, "-o", "jsonpath={.status.lastScheduleTime}"); after != before {
		t.Errorf("lastScheduleTime moved while suspended: %s → %s", before, after)
	}
	k.ok(t, "delete", "cronjob", "tick", "-n", ns)
	waitUntil(t, 20*time.Second, "the deleted CronJob's Jobs collected", func() bool {
		return strings.TrimSpace(k.ok(t, "get", "jobs", "-n", ns, "-o", "name")) == ""
	})
}
