"""`carrier kube play`: Kubernetes manifests run as a supervision tree on real containers,
rootless: Pods sharing a network namespace, Services by name, ConfigMaps as env and files,
PersistentVolumeClaims as named volumes, probes, `--down`, the round trip from generate."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from conftest import Carrier
from helpers import events, wait_event

SUPERVISORS = Path(__file__).parent.parent / "supervisors"
HELPERS = ["pasta", "slirp4netns"]
KUBERNETES = "1.36.0"  # the pinned version whose schemas a generated manifest must satisfy


def _write(path: Path, *docs: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _names(carrier: Carrier, *flags: str) -> list[str]:
    """The names `carrier ps` lists, sorted."""
    res = carrier("ps", "--format", "json", *flags)
    assert res.code == 0, res.err
    return sorted(n for c in json.loads(res.out) for n in c["Names"])


def _log_has(carrier: Carrier, name: str, needle: str, bound: float = 30) -> str:
    """Bounded poll of a container's log (its output announces nothing); the log."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        out = carrier("logs", name).out
        if needle in out:
            return out
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not in the logs of {name} within {bound} s")


def _app(port: int) -> list[dict[str, Any]]:
    """A ConfigMap, a claim, a server Pod (httpd and a sidecar that reaches it on localhost)
    behind a Service, and a client Pod that fetches from the Service by name."""
    labels = {"app": "server"}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "site"},
         "data": {"index.html": "hello-from-configmap\n", "greeting": "hi-from-env"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
         "data": {"token": base64.b64encode(b"s3cret").decode()}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "keep"},
         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "server", "labels": labels},
         "spec": {
             "terminationGracePeriodSeconds": 1,
             "containers": [
                 {"name": "httpd", "image": "busybox",
                  "command": ["sh", "-c", "echo kept > /data/mark; exec httpd -f -p 8080 -h /www"],
                  "ports": [{"containerPort": 8080}],
                  "volumeMounts": [{"name": "www", "mountPath": "/www"},
                                   {"name": "creds", "mountPath": "/etc/token", "subPath": "token"},
                                   {"name": "data", "mountPath": "/data"}]},
                 {"name": "sidecar", "image": "busybox",
                  "command": ["sh", "-c", "until wget -q -O - http://127.0.0.1:8080/; do "
                              "sleep 0.2; done; exec sleep 100000"]},
             ],
             "volumes": [{"name": "www", "configMap": {"name": "site", "items": [
                             {"key": "index.html", "path": "index.html"}]}},
                         {"name": "creds", "secret": {"secretName": "creds"}},
                         {"name": "data", "persistentVolumeClaim": {"claimName": "keep"}}],
         }},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "backend"},
         "spec": {"type": "NodePort", "selector": labels,
                  "ports": [{"port": 8080, "targetPort": 8080, "nodePort": port}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "client"},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "client"}},
                  "template": {"metadata": {"labels": {"app": "client"}}, "spec": {
                      "terminationGracePeriodSeconds": 1, "containers": [
                      {"name": "get", "image": "busybox",
                       "command": ["sh", "-c", 'echo "env=$GREETING $S_token"; echo \'msg=$(MSG)\'; '
                                   "until wget -q -O - http://backend:8080/; do sleep 0.2; done; "
                                   "exec sleep 100000"],
                       "env": [{"name": "GREETING", "valueFrom": {
                           "configMapKeyRef": {"name": "site", "key": "greeting"}}},
                               {"name": "MSG", "value": "$(GREETING)-$(S_token)-$$(GREETING)-$(NO)"}],
                       "envFrom": [{"prefix": "S_", "secretRef": {"name": "creds"}}]}]}}}},
    ]


@pytest.mark.parametrize("helper", HELPERS)
def test_two_pods_service_configmap_claim_and_down(carrier: Carrier, image: str, tmp_path: Path,
                                                   helper: str) -> None:
    """A client Pod reaches the server Pod by its Service's name and the host reaches it on the
    Service's node port; the sidecar reaches httpd on the Pod's shared localhost; the ConfigMap
    is a read-only file and an env value, the Secret a file (subPath) and env (envFrom); $(VAR)
    in env and command is expanded; `kube generate` of the tree (or of a Pod's containers)
    validates and writes each Pod once with its containers, no infra; `carrier down` refuses
    the tree in one line; --down leaves no container or file, keeps the network it did not
    make, and the claim's volume outlives it."""
    port = _free_port()
    manifest = _write(tmp_path / "app.yaml", *_app(port))
    assert carrier("network", "create", "app_default", "-o", f"helper={helper}").code == 0
    res = carrier("kube", "play", str(manifest))
    assert res.code == 0, res.err
    assert res.out.strip() == "app"
    assert _names(carrier) == ["app-client-get", "app-client-infra", "app-server-httpd",
                               "app-server-infra", "app-server-sidecar"]
    out = _log_has(carrier, "app-client-get", "hello-from-configmap")
    assert "env=hi-from-env s3cret" in out
    assert "msg=hi-from-env-s3cret-$(GREETING)-$(NO)\n" in out  # $(VAR) expanded as Kubernetes does
    assert carrier("exec", "app-server-httpd", "cat", "/etc/token").out == "s3cret"
    _log_has(carrier, "app-server-sidecar", "hello-from-configmap")
    pods = {"server": ["httpd", "sidecar"], "client": ["get"]}  # the manifest's, infra left out
    for target, want in ((["app"], pods), (["app-server-infra", "app-server-httpd",
                                             "app-server-sidecar"], {"app-server": pods["server"]})):
        res = carrier("kube", "generate", *target)
        assert res.code == 0, res.err
        docs = [d for d in yaml.safe_load_all(res.out) if d is not None]
        for doc in docs:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        assert {d["metadata"]["name"]: [c["name"] for c in d["spec"]["containers"]]
                for d in docs if d["kind"] == "Pod"} == want
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    assert b"hello-from-configmap" in reply
    res = carrier("exec", "app-server-httpd", "sh", "-c", "echo x > /www/index.html")
    assert res.code != 0  # the ConfigMap's files are read-only
    other = tmp_path / "other.toml"  # a tree file naming the tree that play started
    other.write_text('name = "app"\n[containers.x]\nimage = "busybox"\n')
    for file in (manifest, other):  # carrier down refuses play's tree and changes nothing
        res = carrier("down", str(file))
        assert res.code == 125
        assert res.err.startswith("carrier: ")
        assert f"stop it with carrier kube play --down {manifest}\n" in res.err
        assert len(res.err.splitlines()) == 1
    assert len(_names(carrier)) == 5
    res = carrier("kube", "play", "--down", str(manifest))
    assert res.code == 0, res.err
    assert _names(carrier, "-a") == []
    # The network was made by hand (to choose the helper): --down keeps it, as Compose keeps a
    # network it did not make; it is free again, so it can be removed.
    assert (carrier.root / "networks" / "app_default").exists()
    assert carrier("network", "rm", "app_default").code == 0
    assert list((carrier.root / "trees").iterdir()) == []
    assert (carrier.root / "volumes" / "keep" / "_data" / "mark").read_text() == "kept\n"


@pytest.mark.parametrize("helper", HELPERS)
def test_liveness_restart_keeps_the_pods_network(carrier: Carrier, image: str, tmp_path: Path,
                                                 helper: str) -> None:
    """A failing livenessProbe restarts container a (restartPolicy Always) after the init
    container ran to completion, and the Pod's network outlives the restart: the sidecar still
    reaches a's new run on localhost and the client Pod through the Service; the infra
    container is listed; a field Carrier does not run is a warning with --ignore-unsupported."""
    serve = ("n=$(cat /state/runs 2>/dev/null || echo 0); n=$((n+1)); echo $n > /state/runs; "
             "mkdir -p /w; echo run-$n > /w/index.html; exec httpd -f -p 8080 -h /w")
    fetch = "while true; do wget -q -O - {} || true; sleep 0.2; done"
    labels = {"app": "a"}
    manifest = _write(tmp_path / "live.yaml", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": labels},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "initContainers": [{"name": "init", "image": "busybox",
                                     "command": ["sh", "-c", "echo init-done"]}],
                 "containers": [
                     {"name": "a", "image": "busybox", "command": ["sh", "-c", serve],
                      "resources": {"limits": {"cpu": "1"}},
                      "volumeMounts": [{"name": "state", "mountPath": "/state"}],
                      "livenessProbe": {"exec": {"command": ["sh", "-c", "grep -qv 1 /state/runs"]},
                                        "periodSeconds": 1, "failureThreshold": 1}},
                     {"name": "b", "image": "busybox",
                      "command": ["sh", "-c", fetch.format("http://127.0.0.1:8080/")]}],
                 "volumes": [{"name": "state", "emptyDir": {}}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
         "spec": {"selector": labels, "ports": [{"port": 8080}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
         "spec": {"terminationGracePeriodSeconds": 1, "containers": [
             {"name": "get", "image": "busybox",
              "command": ["sh", "-c", fetch.format("http://svc:8080/")]}]}})
    assert carrier("network", "create", "live_default", "-o", f"helper={helper}").code == 0
    res = carrier("kube", "play", str(manifest))
    assert res.code == 125
    assert res.err.startswith("carrier: not supported: ")
    assert "resources" in res.err
    res = carrier("kube", "play", "--ignore-unsupported", str(manifest))
    assert res.code == 0, res.err
    assert "carrier: warning: " in res.err
    assert "spec.containers[0].resources" in res.err
    assert _names(carrier) == ["live-client-get", "live-client-infra", "live-p-a", "live-p-b",
                               "live-p-infra"]
    _log_has(carrier, "live-p-b", "run-2")  # a restarted; b still shares its localhost
    _log_has(carrier, "live-client-get", "run-2")
    started = [e["name"] for e in events(carrier, "started")]
    assert started[:2] == ["live-p-infra", "live-client-infra"]  # every Pod's network first
    assert started[2:5] == ["live-p-init", "live-p-a", "live-p-b"]
    assert started.count("live-p-a") >= 2
    assert started.count("live-p-infra") == 1
    assert carrier("logs", "live-p-init").out == "init-done\n"
    assert carrier("kube", "play", "--down", str(manifest)).code == 0
    assert _names(carrier, "-a") == []


@pytest.mark.parametrize(("docs", "needle"), [
    ([{"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
       "spec": {"selector": {}, "template": {}}}], "kind StatefulSet is not supported"),
    ([{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
       "spec": {"containers": [{"name": "c", "image": "busybox", "bogus": 1}]}}],
     "Pod p: spec.containers[0]: Additional properties are not allowed ('bogus'"),
    ([{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
       "spec": {"containers": [{"name": "c", "image": "busybox", "env": [
           {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]}]}}],
     "Pod p: container c: no ConfigMap 'nope'"),
    ([{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
       "spec": {"replicas": 3, "selector": {"matchLabels": {"a": "b"}}, "template": {
           "metadata": {"labels": {"a": "b"}},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}],
     "Deployment d: replicas 3: one replica"),
    ([{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
       "spec": {"containers": [{"name": "c", "image": "nope", "imagePullPolicy": "Never"}]}}],
     "no such image: nope"),
    ([{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
       "spec": {"containers": [{"name": "infra", "image": "busybox"}]}}],
     "two containers are both named p-infra (<pod>-<container>; <pod>-infra is each Pod's infra"),
    # Paths and names the schemas allow and the API server refuses: they would leave the
    # tree's files directory (checked below: nothing named "escaped" is written anywhere).
    ([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"}},
      {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
       "spec": {"containers": [{"name": "c", "image": "busybox",
                                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/app"}]}],
                "volumes": [{"name": "cfg", "configMap": {
                    "name": "cm", "items": [{"key": "k", "path": "../../../../escaped"}]}}]}}],
     "path '../../../../escaped' must be relative and must not contain '..'"),
    ([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"}},
      {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
       "spec": {"containers": [{"name": "c", "image": "busybox", "volumeMounts": [
           {"name": "cfg", "mountPath": "/etc/app/k", "subPath": "../../escaped"}]}],
                "volumes": [{"name": "cfg", "configMap": {"name": "cm"}}]}}],
     "subPath '../../escaped' must be relative and must not contain '..'"),
    ([{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name"},
       "spec": {"containers": [{"name": "c", "image": "busybox"}]}}],
     "metadata.name 'Bad_Name' is not a DNS subdomain"),
])
def test_bad_input_one_line_125_nothing_stored(carrier: Carrier, image: str, tmp_path: Path,
                                               docs: list[dict[str, Any]], needle: str) -> None:
    """Invalid or unsupported manifests are refused in one line naming the object and field,
    exit 125, and nothing is stored (no container, network or file)."""
    manifest = _write(tmp_path / "bad.yaml", *docs)
    res = carrier("kube", "play", str(manifest))
    assert res.code == 125
    assert res.err.startswith("carrier: "), res.err
    assert needle in res.err, res.err
    assert len(res.err.strip().splitlines()) == 1
    assert not any((carrier.root / "containers").iterdir())
    assert not list(carrier.root.parent.rglob("escaped"))
    for kept in ("networks", "trees", "volumes"):  # a directory with its lock file at most
        d = carrier.root / kept
        assert not d.exists() or [p.name for p in d.iterdir()] in ([], [".lock"]), kept


@pytest.mark.parametrize("tree", sorted(p.name for p in SUPERVISORS.glob("*.toml")))
def test_round_trip_generate_then_play(carrier: Carrier, image: str, tmp_path: Path,
                                      tree: str) -> None:
    """`kube generate` of an example tree, then `kube play` of its output, runs every service
    with the command the tree file gives it (what `carrier up` runs), and the web tree's
    services answer as under `up`: the host port serves the page and the client fetched it by
    the server's name."""
    declared = tomllib.loads((SUPERVISORS / tree).read_text())
    res = carrier("kube", "generate", str(SUPERVISORS / tree))
    assert res.code == 0, res.err
    name = declared["name"]
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(res.out)
    res = carrier("kube", "play", str(manifest))
    assert res.code == 0, res.err
    members = {f"{name}-{c}-{c}": spec["command"] for c, spec in declared["containers"].items()}
    wait_event(carrier, "started", count=2 * len(members))  # each with its Pod's infra
    for member, command in members.items():
        assert carrier.record(member)["spec"]["args"] == command  # type: ignore[index]
    if tree == "web.toml":
        _log_has(carrier, f"{name}-client-client", "hello-from-web")
        with socket.create_connection(("127.0.0.1", 18480), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
        assert b"hello-from-web" in reply
    res = carrier("kube", "play", "--down", str(manifest))
    assert res.code == 0, res.err
    assert _names(carrier, "-a") == []
    assert carrier("network", "ls", "-q").out.split() == []  # the network the tree made is gone


def test_down_while_an_init_container_runs(carrier: Carrier, image: str, tmp_path: Path) -> None:
    """--down while the Pod still waits for its init container stops it at once: the waiting
    play fails in one line and nothing is left."""
    manifest = _write(tmp_path / "slow.yaml", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "initContainers": [{"name": "init", "image": "busybox",
                                     "command": ["sleep", "100000"]}],
                 "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}})
    play = carrier.popen("kube", "play", str(manifest), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    wait_event(carrier, "started", count=2)  # the infra container, then the init container
    res = carrier("kube", "play", "--down", str(manifest))
    assert res.code == 0, res.err
    _, err = play.communicate(timeout=60)
    assert play.returncode == 125
    assert "stopped while waiting for p-init" in err
    assert _names(carrier, "-a") == []
    assert list((carrier.root / "trees").iterdir()) == []


def test_down_stops_independent_containers_together(carrier: Carrier, image: str,
                                                    tmp_path: Path) -> None:
    """--down sends SIGTERM to a Pod's containers at once (neither depends on the other): each
    one's handler sees the other's mark and exits 0, where a one-by-one stop would leave the
    first waiting in vain (exit 1); the infra container stops after them."""
    wait = ("trap 'touch /s/{me}; i=0; while [ ! -e /s/{other} ] && [ $i -lt 200 ]; do "
            "sleep 0.1; i=$((i+1)); done; [ -e /s/{other} ]; exit $?' TERM; echo ready; "
            "while true; do sleep 1 & wait; done")
    manifest = _write(tmp_path / "pair.yaml", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"terminationGracePeriodSeconds": 30,
                 "containers": [{"name": me, "image": "busybox",
                                 "command": ["sh", "-c", wait.format(me=me, other=other)],
                                 "volumeMounts": [{"name": "s", "mountPath": "/s"}]}
                                for me, other in (("a", "b"), ("b", "a"))],
                 "volumes": [{"name": "s", "emptyDir": {}}]}})
    res = carrier("kube", "play", str(manifest))
    assert res.code == 0, res.err
    for name in ("pair-p-a", "pair-p-b"):
        _log_has(carrier, name, "ready")  # its handler is in place
    res = carrier("kube", "play", "--down", str(manifest))
    assert res.code == 0, res.err
    exits = {e["name"]: e["exit_code"] for e in events(carrier, "exited")}
    assert exits == {"pair-p-a": 0, "pair-p-b": 0, "pair-p-infra": 0}
    assert [e["name"] for e in events(carrier, "exited")][-1] == "pair-p-infra"
    assert _names(carrier, "-a") == []


def _until(carrier: Carrier, needle: str, *argv: str, bound: float = 30) -> str:
    """Bounded retry of `carrier ARGV` until its output holds *needle* (what it reads, a
    container's hosts file or a server behind a name, announces nothing); the output."""
    deadline = time.monotonic() + bound
    out = ""
    while time.monotonic() < deadline:
        out = carrier(*argv).out
        if needle in out:
            return out
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not in the output of {argv} within {bound} s: {out!r}")


@pytest.mark.parametrize("helper", HELPERS)
def test_infra_killed_recreates_the_pod(carrier: Carrier, image: str, tmp_path: Path,
                                        helper: str) -> None:
    """A Pod's sidecar resolves a container started on the tree's network after the Pod (its
    hosts follow the infra container's); SIGKILL of a Pod's infra container ends the Pod's
    app container with network-exited, the infra restarts first and the app rejoins its new
    namespace, reachable again by Service name from the other Pod."""
    labels = {"app": "server"}
    manifest = _write(tmp_path / "pk.yaml", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "server", "labels": labels},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [
            {"name": "httpd", "image": "busybox",
             "command": ["sh", "-c", "mkdir -p /w; echo served > /w/index.html; "  # quick on TERM
                         "httpd -f -p 8080 -h /w & trap 'kill $!; exit 0' TERM; wait"]}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "backend"},
         "spec": {"selector": labels, "ports": [{"port": 8080}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
         "spec": {"terminationGracePeriodSeconds": 1, "containers": [
             {"name": "get", "image": "busybox", "command": ["sleep", "100000"]}]}})
    assert carrier("network", "create", "pk_default", "-o", f"helper={helper}").code == 0
    res = carrier("kube", "play", str(manifest))
    assert res.code == 0, res.err
    fetch = ["exec", "pk-client-get", "sh", "-c",  # busybox wget -T crashes under exec
             r'printf "GET / HTTP/1.0\r\n\r\n" | nc -w 2 backend 8080']
    _until(carrier, "served", *fetch)
    res = carrier("run", "-d", "--name", "late", "--network", "pk_default", "busybox",
                  "sleep", "100000")
    assert res.code == 0, res.err
    address = carrier.record("late")["network"]["address"].split("/")[0]  # type: ignore[index]
    _until(carrier, f"{address}\tlate", "exec", "pk-client-get", "cat", "/etc/hosts")
    infra = carrier.record("pk-server-infra")["container_pid"]
    assert isinstance(infra, int)
    os.kill(infra, signal.SIGKILL)
    wait_event(carrier, "started", count=7)  # two infra, two apps, late, then the Pod again
    ended = {e["name"]: e["reason"] for e in events(carrier, "exited")}
    assert ended == {"pk-server-infra": "killed", "pk-server-httpd": "network-exited"}
    started = [e["name"] for e in events(carrier, "started")]
    assert started[-2:] == ["pk-server-infra", "pk-server-httpd"]
    _until(carrier, "served", *fetch)
    assert carrier("rm", "-f", "late").code == 0
    assert carrier("kube", "play", "--down", str(manifest)).code == 0
    assert _names(carrier, "-a") == []
