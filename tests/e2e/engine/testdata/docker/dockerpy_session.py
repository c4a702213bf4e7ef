"""A docker-py (7.x) session against a berth daemon.

Run with DOCKER_HOST=unix:///path/to/berth.sock. Every check prints
"ok NAME"; the first failure raises (non-zero exit, traceback on stderr).
The images busybox:latest must be loaded; nothing else may be assumed.
The script removes everything it creates.
"""
import io
import os
import socket
import sys
import tarfile
import threading
import time

import docker
from docker import errors

PREFIX = "pyt-%d-" % os.getpid()
client = docker.from_env(timeout=60)
api = client.api
created = {"containers": [], "volumes": [], "networks": [], "images": []}


def ok(name):
    print("ok", name, flush=True)


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def cleanup():
    for c in created["containers"]:
        try:
            api.remove_container(c, force=True, v=True)
        except errors.NotFound:
            pass
    for n in created["networks"]:
        try:
            api.remove_network(n)
        except errors.NotFound:
            pass
    for v in created["volumes"]:
        try:
            api.remove_volume(v, force=True)
        except errors.NotFound:
            pass
    for i in created["images"]:
        try:
            api.remove_image(i, force=True)
        except errors.NotFound:
            pass


def run(name, **kw):
    kw.setdefault("detach", True)
    c = client.containers.run("busybox", name=PREFIX + name, **kw)
    created["containers"].append(c.id)
    return c


def main():
    # --- daemon
    expect(client.ping() is True, "ping")
    v = client.version()
    expect(float(v["ApiVersion"]) >= 1.44, "ApiVersion %s >= 1.44" % v["ApiVersion"])
    info = client.info()
    expect(info["OSType"] == "linux" and info["NCPU"] > 0, "info fields: %r" % info)
    ok("version/info")

    # --- containers: foreground run (create, start, logs, wait, remove)
    out = client.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2"], remove=True)
    expect(out == b"out\n", "run stdout: %r" % out)
    out = client.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2"], remove=True, stderr=True, stdout=False)
    expect(out == b"err\n", "run stderr: %r" % out)
    try:
        client.containers.run("busybox", ["sh", "-c", "exit 3"], remove=True)
        raise AssertionError("exit 3 did not raise ContainerError")
    except errors.ContainerError as e:
        expect(e.exit_status == 3, "exit status %r" % e.exit_status)
    ok("run foreground")

    # --- detached, labels, list filters
    a = run("a", command=["sleep", "60"], labels={"pyt": "a", "role": "web"})
    b = run("b", command=["sh", "-c", "echo done; exit 2"], labels={"pyt": "b"})
    expect(b.wait(timeout=30)["StatusCode"] == 2, "wait exit code")
    names = lambda **f: sorted(c.name for c in client.containers.list(all=True, filters=f))
    expect(names(label="pyt=a") == [PREFIX + "a"], "label filter: %r" % names(label="pyt=a"))
    expect(names(label=["pyt", "role=web"]) == [PREFIX + "a"], "two label filters")
    expect(names(status="exited", label="pyt") == [PREFIX + "b"], "status filter")
    expect(names(exited=2, label="pyt") == [PREFIX + "b"], "exited filter")
    expect(names(name=PREFIX + "a") == [PREFIX + "a"], "name filter")
    expect(names(id=a.id[:12]) == [PREFIX + "a"], "id filter")
    expect(PREFIX + "a" in names(ancestor="busybox"), "ancestor filter")
    expect([c.name for c in client.containers.list(filters={"label": "pyt"})] == [PREFIX + "a"], "running only")
    ok("list filters")

    # --- inspect defaults clients index into
    a.reload()
    hc = a.attrs["HostConfig"]
    expect(hc["LogConfig"]["Type"] and hc["RestartPolicy"]["Name"] == "no" and hc["NetworkMode"], "HostConfig defaults: %r" % hc)
    expect(a.attrs["Name"] == "/" + PREFIX + "a" and a.status == "running", "name/status")
    expect(client.containers.get(a.id[:12]).id == a.id, "get by short id")
    ok("inspect")

    # --- logs: all, tail, timestamps, streaming follow
    expect(b.logs() == b"done\n", "logs: %r" % b.logs())
    expect(b.logs(timestamps=True).decode().split(" ", 1)[1] == "done\n", "timestamps")
    s = run("s", command=["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done"])
    lines = [l for l in s.logs(stream=True, follow=True)]
    expect(b"".join(lines) == b"line1\nline2\nline3\n", "streamed logs: %r" % lines)
    expect(len(lines) >= 2, "logs arrived in pieces while following: %r" % lines)
    expect(s.logs(tail=1) == b"line3\n", "tail")
    ok("logs")

    # --- exec: plain, demux, exit code, env/workdir, stream; output right after the 101
    for i in range(5):
        r = a.exec_run(["echo", "hi"])
        expect(r.exit_code == 0 and r.output == b"hi\n", "exec_run #%d: %r" % (i, r))
    r = a.exec_run(["sh", "-c", "echo o; echo e >&2; exit 5"], demux=True)
    expect(r.exit_code == 5 and r.output == (b"o\n", b"e\n"), "exec demux: %r" % (r,))
    r = a.exec_run(["sh", "-c", "echo $FOO; pwd"], environment={"FOO": "bar"}, workdir="/tmp")
    expect(r.output == b"bar\n/tmp\n", "exec env/workdir: %r" % r.output)
    r = a.exec_run(["sh", "-c", "echo one; sleep 0.3; echo two"], stream=True)
    expect(b"".join(r.output) == b"one\ntwo\n", "exec stream")
    r = a.exec_run(["sh", "-c", "test -t 1 && echo is-a-tty"], tty=True)
    expect(r.output == b"is-a-tty\r\n", "exec tty: %r" % r.output)
    r = a.exec_run(["no-such-command"])
    expect(r.exit_code in (126, 127) and b"no-such-command" in r.output, "exec missing command: %r" % (r,))
    eid = api.exec_create(a.id, ["true"])["Id"]
    api.exec_start(eid)
    expect(api.exec_inspect(eid)["ExitCode"] == 0, "exec inspect")
    ok("exec")

    # --- attach: streamed output of a container started after the attach
    c = client.containers.create("busybox", ["sh", "-c", "echo att1; sleep 0.2; echo att2 >&2"], name=PREFIX + "att")
    created["containers"].append(c.id)
    got = []
    stream = c.attach(stream=True, stdout=True, stderr=True, logs=True)
    t = threading.Thread(target=lambda: got.extend(stream))
    t.start()
    time.sleep(0.3)
    c.start()
    t.join(20)
    expect(b"".join(got) == b"att1\natt2\n", "attach: %r" % got)
    # attach with stdin through the raw socket
    c = client.containers.create("busybox", ["cat"], stdin_open=True, name=PREFIX + "stdin")
    created["containers"].append(c.id)
    sock = c.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1})
    c.start()
    raw = sock._sock
    raw.sendall(b"through stdin\n")
    raw.shutdown(socket.SHUT_WR)
    data = b""
    raw.settimeout(10)
    while True:
        chunk = raw.recv(4096)
        if not chunk:
            break
        data += chunk
    expect(data[8:] == b"through stdin\n" and data[0] == 1, "attach stdin: %r" % data)
    expect(c.wait(timeout=10)["StatusCode"] == 0, "cat exits at EOF")
    ok("attach")

    # --- wait conditions
    w = client.containers.create("busybox", ["true"], name=PREFIX + "w")
    created["containers"].append(w.id)
    res = {}
    t = threading.Thread(target=lambda: res.update(w.wait(condition="next-exit", timeout=20)))
    t.start()
    time.sleep(0.2)
    w.start()
    t.join(20)
    expect(res.get("StatusCode") == 0, "wait next-exit: %r" % res)
    expect(w.wait(condition="not-running", timeout=5)["StatusCode"] == 0, "wait not-running")
    try:
        w.wait(condition="bogus")
        raise AssertionError("bad condition accepted")
    except errors.APIError as e:
        expect(e.status_code == 400, "bad condition status %r" % e.status_code)
    ok("wait")

    # --- top, stats, rename, update, pause, restart, kill
    top = a.top()
    expect(any("sleep" in " ".join(p) for p in top["Processes"]), "top: %r" % top)
    st = a.stats(stream=False)
    expect(st["pids_stats"]["current"] >= 1 and st["memory_stats"]["usage"] > 0, "stats: %r" % st)
    a.rename(PREFIX + "renamed")
    a.reload()
    expect(a.name == PREFIX + "renamed", "rename")
    a.update(mem_limit="64m", cpu_quota=50000, restart_policy={"Name": "on-failure", "MaximumRetryCount": 2})
    a.reload()
    hc = a.attrs["HostConfig"]
    expect(hc["Memory"] == 64 << 20 and hc["CpuQuota"] == 50000 and hc["RestartPolicy"]["Name"] == "on-failure", "update: %r" % hc)
    a.pause()
    a.reload()
    expect(a.status == "paused", "pause")
    a.unpause()
    a.restart(timeout=1)
    a.reload()
    expect(a.status == "running", "restart")
    ok("top/stats/rename/update/pause/restart")

    # --- archive both ways, export
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        body = b"put by docker-py\n"
        ti = tarfile.TarInfo("dir/put.txt")
        ti.size = len(body)
        tf.addfile(ti, io.BytesIO(body))
    expect(a.put_archive("/tmp", buf.getvalue()) is True, "put_archive")
    expect(a.exec_run(["cat", "/tmp/dir/put.txt"]).output == b"put by docker-py\n", "file arrived")
    bits, stat = a.get_archive("/tmp/dir")
    tf = tarfile.open(fileobj=io.BytesIO(b"".join(bits)))
    expect(sorted(tf.getnames()) == ["dir", "dir/put.txt"], "get_archive names %r" % tf.getnames())
    expect(tf.extractfile("dir/put.txt").read() == b"put by docker-py\n", "get_archive content")
    expect(stat["name"] == "dir" and stat["mode"] & (1 << 31), "stat %r" % stat)
    try:
        a.get_archive("/nonexistent")
        raise AssertionError("missing path did not raise")
    except errors.NotFound:
        pass
    exported = b"".join(a.export())
    names_ = tarfile.open(fileobj=io.BytesIO(exported)).getnames()
    expect("bin/busybox" in names_ and "tmp/dir/put.txt" in names_, "export")
    ok("archive/export")

    # --- remove: refused while running, force, v
    try:
        a.remove()
        raise AssertionError("removing a running container succeeded")
    except errors.APIError as e:
        expect(e.status_code == 409, "remove running: %r" % e.status_code)
    a.remove(force=True, v=True)
    try:
        client.containers.get(a.id)
        raise AssertionError("removed container still there")
    except errors.NotFound:
        pass
    pr = client.containers.prune(filters={"label": "pyt=b"})
    expect(b.id in pr["ContainersDeleted"], "prune with label filter: %r" % pr)
    ok("remove/prune")

    # --- volumes
    vol = client.volumes.create(PREFIX + "vol", labels={"pyt": "1"})
    created["volumes"].append(vol.name)
    expect([x.name for x in client.volumes.list(filters={"label": "pyt=1"})] == [vol.name], "volume list filter")
    expect(client.volumes.get(vol.name).attrs["Driver"] == "local", "volume get")
    out = client.containers.run("busybox", ["sh", "-c", "echo persisted > /v/f"], volumes={vol.name: {"bind": "/v", "mode": "rw"}}, remove=True)
    out = client.containers.run("busybox", ["cat", "/v/f"], volumes=[vol.name + ":/v:ro"], remove=True)
    expect(out == b"persisted\n", "volume content: %r" % out)
    vol.remove()
    ok("volumes")

    # --- networks: create, connect by name, disconnect, list filter, remove
    net = client.networks.create(PREFIX + "net", labels={"pyt": "1"})
    created["networks"].append(net.id)
    expect([n.name for n in client.networks.list(filters={"label": "pyt=1"})] == [net.name], "network list filter")
    srv = run("srv", command=["busybox", "httpd", "-f", "-p", "80", "-h", "/etc"], network=net.name)
    # A container started on the network finds the server by name.
    out = client.containers.run("busybox", ["wget", "-qO-", "http://%s/hostname" % srv.name], network=net.name, remove=True)
    expect(out.strip(), "name resolution on the user network: %r" % out)
    # One connected later reaches it on the network.
    cl = run("cl", command=["sleep", "60"])
    net.connect(cl, aliases=["client"])
    net.reload()
    expect(any(c.id == cl.id for c in net.containers), "connected")
    srv.reload()
    ip = srv.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"]
    r = cl.exec_run(["wget", "-qO-", "http://%s/hostname" % ip])
    expect(r.exit_code == 0 and r.output.strip(), "reaching %s after connect: %r" % (ip, r))
    net.disconnect(cl)
    cl.reload()
    expect(net.name not in cl.attrs["NetworkSettings"]["Networks"], "disconnected")
    srv.remove(force=True)
    cl.remove(force=True)
    net.remove()
    ok("networks")

    # --- images: list, get by short id, tag, history, save/load, remove
    img = client.images.get("busybox")
    expect(client.images.get(img.short_id.split(":")[1]).id == img.id, "image by short id")
    expect("busybox:latest" in img.tags, "tags")
    expect(img.tag("pyt-tag", "v1") is True, "tag")
    created["images"].append("pyt-tag:v1")
    expect(any("pyt-tag:v1" in i.tags for i in client.images.list()), "tagged image listed")
    expect(len(img.history()) >= 1, "history")
    saved = b"".join(client.images.get("pyt-tag:v1").save(named="pyt-tag:v1"))
    client.images.remove("pyt-tag:v1")
    loaded = client.images.load(saved)
    expect(any("pyt-tag:v1" in i.tags for i in loaded), "load: %r" % loaded)
    client.images.remove("pyt-tag:v1")
    try:
        client.images.get("pyt-missing:none")
        raise AssertionError("missing image found")
    except errors.ImageNotFound:
        pass
    ok("images")

    # --- build, push, pull (PYT_REGISTRY is a registry on loopback)
    reg = os.environ.get("PYT_REGISTRY")
    if reg:
        df = b'FROM busybox\nRUN echo py-built > /py\nCMD ["cat", "/py"]\n'
        ctx = io.BytesIO()
        with tarfile.open(fileobj=ctx, mode="w") as tf:
            ti = tarfile.TarInfo("Dockerfile")
            ti.size = len(df)
            tf.addfile(ti, io.BytesIO(df))
        ctx.seek(0)
        ref = "%s/pyt/built" % reg
        img, logs = client.images.build(fileobj=ctx, custom_context=True, tag=ref + ":v1", rm=True)
        created["images"].append(ref + ":v1")
        logs = list(logs)
        expect(any("Successfully built" in l.get("stream", "") for l in logs), "build logs: %r" % logs)
        out = client.containers.run(ref + ":v1", remove=True)
        expect(out == b"py-built\n", "run of the built image: %r" % out)
        lines = list(client.images.push(ref, tag="v1", stream=True, decode=True))
        expect(not any("error" in l for l in lines), "push: %r" % lines)
        expect(any(l.get("aux", {}).get("Digest", "").startswith("sha256:") for l in lines), "push aux: %r" % lines[-3:])
        client.images.remove(ref + ":v1")
        pulled = client.images.pull(ref, tag="v1")
        expect(pulled.id == img.id, "pulled %s, built %s" % (pulled.id, img.id))
        out = client.containers.run(ref + ":v1", remove=True)
        expect(out == b"py-built\n", "run of the pulled image: %r" % out)
        try:
            client.images.pull(ref, tag="nope")
            raise AssertionError("missing tag pulled")
        except errors.NotFound:
            pass
        ok("build/push/pull")

    # --- events with filters, bounded by until
    since = time.time() - 1
    e1 = run("ev", command=["true"], labels={"pyt-ev": "1"})
    e1.wait(timeout=10)
    e1.remove()
    until = time.time() + 0.5
    evs = list(client.events(since=since, until=until, decode=True,
                             filters={"type": "container", "label": "pyt-ev=1"}))
    actions = [e["Action"] for e in evs]
    for want in ["create", "start", "die", "destroy"]:
        expect(want in actions, "event %s in %r" % (want, actions))
    expect(all(e["Actor"]["Attributes"].get("pyt-ev") == "1" for e in evs), "events carry labels")
    ok("events")

    # --- errors come back as Docker's
    try:
        client.containers.get("pyt-no-such-container")
        raise AssertionError("missing container found")
    except errors.NotFound as e:
        expect("No such container" in str(e), str(e))
    try:
        client.containers.run("busybox", ["true"], mem_limit="1k")
        raise AssertionError("1k memory accepted")
    except errors.APIError as e:
        expect(e.status_code == 400, "bad memory: %r" % e.status_code)
    ok("errors")


if __name__ == "__main__":
    try:
        main()
    finally:
        cleanup()
    print("ALL OK")
