"""Workloads to Kubernetes objects: Pods or Deployments, Services and PersistentVolumeClaims.

What Kubernetes cannot express is never dropped silently: each such setting becomes a note,
which the YAML carries as a comment and the CLI prints as a warning. Settings that only say how
*this* machine runs a container (runtime, storage driver, the host's resolv.conf) are not part
of the workload and are not exported.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._network._options import parse_add_host
from .._network._ports import PortMapping, parse_ports
from .._storage._mounts import Mount, parse_mounts
from ._workload import Workload

Kind = Literal["pod", "deployment"]
WAIT_IMAGE = "docker.io/library/busybox:latest"  # runs the init containers' dependency waits
_RESTART = {"no": "Never", "on-failure": "OnFailure", "always": "Always", "unless-stopped": "Always"}
_PERMISSIVE = ["Never", "OnFailure", "Always"]
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                        r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_SIZE = re.compile(r"^(\d+)([kmgKMG]?)$")


@dataclass
class Manifest:
    """The objects, in the order a reader expects (claims, then workloads, then Services)."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def dns_name(name: str) -> str:
    """*name* as a DNS-1123 label, which Kubernetes object names must be."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].rstrip("-")
    return label or "carrier"


def generate(groups: Sequence[tuple[str, Sequence[Workload]]], *, kind: Kind = "pod",
             services: bool = False) -> Manifest:
    """One Pod (or Deployment) per group, holding the group's containers; with *services*, a
    Service for every group that publishes ports."""
    out = Manifest()
    claims: dict[str, dict[str, Any]] = {}
    ports_of = {w.name: _ports(w, out.notes) for _, ws in groups for w in ws}
    for name, workloads in groups:
        pod = _pod_spec(workloads, ports_of, claims, out.notes)
        app = dns_name(name)
        if kind == "deployment":
            if pod.get("restartPolicy", "Always") != "Always":
                out.notes.append(f"{name}: a Deployment restarts always; restart policy "
                                 f"{pod['restartPolicy']} became Always")
            pod["restartPolicy"] = "Always"
            out.objects.append({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": app, "labels": {"app": app}},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": app}},
                         "template": {"metadata": {"labels": {"app": app}}, "spec": pod}},
            })
        else:
            meta = _metadata(app, workloads, out.notes)
            out.objects.append({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod})
        published = [p for w in workloads for p in ports_of[w.name]]
        if services and published:
            out.objects.append(_service(app, published))
    out.objects[:0] = claims.values()
    return out


def _metadata(app: str, workloads: Sequence[Workload], notes: list[str]) -> dict[str, Any]:
    labels: dict[str, str] = {"app": app}
    annotations: dict[str, str] = {}
    for w in workloads:
        for key, value in w.spec.labels.items():
            if _LABEL_KEY.match(key) and _LABEL_VALUE.match(value):
                labels.setdefault(key, value)
            else:
                annotations[key] = value
                notes.append(f"{w.name}: label {key}={value!r} is not a valid Kubernetes label; "
                             "kept as an annotation")
    meta: dict[str, Any] = {"name": app, "labels": labels}
    if annotations:
        meta["annotations"] = annotations
    return meta


def _ports(w: Workload, notes: list[str]) -> list[PortMapping]:
    mappings = parse_ports(w.spec.ports)
    if any(p.host_port == 0 for p in mappings):
        notes.append(f"{w.name}: a random host port (0) has no Kubernetes form; "
                     "only the container port is kept")
    return mappings


def _pod_spec(workloads: Sequence[Workload], ports_of: dict[str, list[PortMapping]],
              claims: dict[str, dict[str, Any]], notes: list[str]) -> dict[str, Any]:
    pod: dict[str, Any] = {}
    volumes: list[dict[str, Any]] = []
    policies = [_restart(w, notes) for w in workloads]
    if len(set(policies)) > 1:
        notes.append(f"{', '.join(w.name for w in workloads)}: one Pod has one restart policy; "
                     f"{max(policies, key=_PERMISSIVE.index)} was chosen from {sorted(set(policies))}")
    pod["restartPolicy"] = max(policies, key=_PERMISSIVE.index)
    pod["containers"] = [_container(w, ports_of[w.name], volumes, claims, notes) for w in workloads]
    inits = [c for w in workloads for c in _waits(w, ports_of, notes)]
    if inits:
        pod["initContainers"] = inits
    if volumes:
        pod["volumes"] = volumes
    grace = max(w.spec.stop_timeout for w in workloads)
    if grace != 30:  # Kubernetes' default
        pod["terminationGracePeriodSeconds"] = math.ceil(grace)
    _pod_network(pod, workloads, notes)
    return pod


def _restart(w: Workload, notes: list[str]) -> str:
    mode, _, count = w.spec.restart.partition(":")
    if count:
        notes.append(f"{w.name}: --restart {w.spec.restart}: Kubernetes has no retry limit "
                     "(it backs off instead); the limit is dropped")
    s = w.spec
    if (s.restart_delay, s.restart_max_delay, s.restart_intensity, s.restart_period) != (
            0.1, 10.0, 5, 10.0) and mode != "no":
        notes.append(f"{w.name}: restart delay and intensity have no Kubernetes form "
                     "(the kubelet backs off from 10s to 5m)")
    return _RESTART[mode]


def _container(w: Workload, ports: list[PortMapping], volumes: list[dict[str, Any]],
               claims: dict[str, dict[str, Any]], notes: list[str]) -> dict[str, Any]:
    s = w.spec
    c: dict[str, Any] = {"name": dns_name(w.name), "image": s.image}
    if w.command is not None:
        c["command"] = list(w.command)
    if w.args is not None:
        c["args"] = list(w.args)
    if s.env:
        c["env"] = [{"name": k, "value": v} for k, _, v in (e.partition("=") for e in s.env)]
    if s.cwd and s.cwd != "/":
        c["workingDir"] = s.cwd
    if ports:
        c["ports"] = _container_ports(ports)
    security: dict[str, Any] = {}
    user, _, group = s.user.partition(":")
    if user and user.isdigit() and (not group or group.isdigit()):
        security["runAsUser"] = int(user)
        if group:
            security["runAsGroup"] = int(group)
    elif user:
        notes.append(f"{w.name}: user {s.user!r} is a name; Kubernetes takes numeric ids only")
    if s.read_only:
        security["readOnlyRootFilesystem"] = True
    if security:
        c["securityContext"] = security
    if s.tty:
        c.update(tty=True, stdin=True)
    mounts = [_mount(w.name, m, volumes, claims, notes) for m in parse_mounts(s, check_sources=False)]
    if mounts:
        c["volumeMounts"] = mounts
    if s.health_cmd:
        probe = _probe(w, notes)
        c["readinessProbe"] = probe
        if s.health_on_failure in ("kill", "restart"):
            c["livenessProbe"] = dict(probe)
    for item, why in ((s.host_loopback, "--host-loopback (the host's loopback from inside)"),
                      (s.mtu is not None, f"--mtu {s.mtu}"), (s.remove, "--rm"),
                      (s.init, "--init (Kubernetes has no init process per container)")):
        if item:
            notes.append(f"{w.name}: {why} has no Kubernetes form")
    for option in w.unknown:
        notes.append(f"{w.name}: {option} has no Kubernetes form")
    return c


def _container_ports(ports: list[PortMapping]) -> list[dict[str, Any]]:
    out: dict[tuple[int, str], dict[str, Any]] = {}
    for p in ports:
        entry: dict[str, Any] = {"containerPort": p.container_port, "protocol": p.proto.upper()}
        if p.host_port:
            entry["hostPort"] = p.host_port
            if p.host_ip not in ("0.0.0.0", "::"):
                entry["hostIP"] = p.host_ip
        out.setdefault((p.container_port, p.proto), entry)
    return list(out.values())


def _mount(owner: str, m: Mount, volumes: list[dict[str, Any]],
           claims: dict[str, dict[str, Any]], notes: list[str]) -> dict[str, Any]:
    name = f"{m.kind}-{len(volumes)}"
    if m.kind == "volume":
        claim = dns_name(m.source)
        if claim != m.source:
            notes.append(f"{owner}: volume {m.source!r} is claimed as {claim!r} (a DNS name)")
        claims.setdefault(claim, {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        })
        volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim}})
    elif m.kind == "bind":
        host: dict[str, Any] = {"path": m.source}
        if os.path.isdir(m.source):
            host["type"] = "Directory"
        elif os.path.isfile(m.source):
            host["type"] = "File"
        volumes.append({"name": name, "hostPath": host})
    else:
        empty: dict[str, Any] = {"medium": "Memory"}
        for opt in m.options:
            key, _, value = opt.partition("=")
            size = _SIZE.match(value) if key == "size" else None
            if size:
                empty["sizeLimit"] = size[1] + {"": "", "k": "Ki", "m": "Mi", "g": "Gi"}[size[2].lower()]
            elif key not in ("nosuid", "nodev", "rw"):
                notes.append(f"{owner}: tmpfs {m.destination} option {opt!r} has no Kubernetes form")
        volumes.append({"name": name, "emptyDir": empty})
    mount: dict[str, Any] = {"name": name, "mountPath": m.destination}
    if m.read_only:
        mount["readOnly"] = True
    return mount


def _probe(w: Workload, notes: list[str]) -> dict[str, Any]:
    s = w.spec
    if s.health_interval < 1 or s.health_timeout < 1:
        notes.append(f"{w.name}: health checks run at most once a second in Kubernetes "
                     f"(interval {s.health_interval:g}s, timeout {s.health_timeout:g}s)")
    probe: dict[str, Any] = {
        "exec": {"command": ["/bin/sh", "-c", s.health_cmd]},
        "periodSeconds": max(1, math.ceil(s.health_interval)),
        "timeoutSeconds": max(1, math.ceil(s.health_timeout)),
        "failureThreshold": s.health_retries,
    }
    if s.health_start_period:
        probe["initialDelaySeconds"] = math.ceil(s.health_start_period)
    return probe


def _waits(w: Workload, ports_of: dict[str, list[PortMapping]],
           notes: list[str]) -> list[dict[str, Any]]:
    """``depends_on`` as init containers that wait until the dependency's Service answers
    (Kubernetes starts a Pod's containers without regard to other Pods)."""
    waits = []
    for dep, condition in w.depends_on.items():
        port = int(condition[5:]) if condition.startswith("port:") else next(
            (p.container_port for p in ports_of.get(dep, []) if p.proto == "tcp"), None)
        if port is None:
            notes.append(f"{w.name}: depends_on {dep} = {condition!r}: {dep} has no TCP port to "
                         "wait on; not expressed")
            continue
        host = dns_name(dep)
        waits.append({"name": f"wait-for-{host}", "image": WAIT_IMAGE,
                      "command": ["sh", "-c", f"until {tcp_check(host, port)}; do sleep 1; done"]})
    return waits


def tcp_check(host: str, port: int, timeout: int = 1) -> str:
    """A shell command that succeeds once *host*:*port* accepts a TCP connection: busybox's
    ``nc -z`` (the official image), else ``nc ... -e true`` (Debian's busybox has no ``-z``)."""
    return (f"nc -z -w {timeout} {host} {port} 2>/dev/null || "
            f"nc -w {timeout} {host} {port} -e true 2>/dev/null")


def _pod_network(pod: dict[str, Any], workloads: Sequence[Workload], notes: list[str]) -> None:
    networks = {w.spec.network for w in workloads}
    if networks == {"host"}:
        pod["hostNetwork"] = True
    elif "host" in networks or "none" in networks:
        notes.append(f"network {'/'.join(sorted(networks))}: a Pod has one network; "
                     "Kubernetes' own is used")
    hostnames = [w.spec.hostname for w in workloads if w.spec.hostname]
    if hostnames:
        pod["hostname"] = dns_name(hostnames[0])
    servers = [d for w in workloads for d in w.spec.dns]
    searches = [d for w in workloads for d in w.spec.dns_search]
    options = [o for w in workloads for o in w.spec.dns_option]
    if servers or searches or options:
        config: dict[str, Any] = {}
        if servers:
            pod["dnsPolicy"] = "None"
            config["nameservers"] = list(dict.fromkeys(servers))
        if searches:
            config["searches"] = list(dict.fromkeys(searches))
        if options:
            config["options"] = [dict(zip(("name", "value"), o.split(":", 1), strict=False))
                                 for o in dict.fromkeys(options)]
        pod["dnsConfig"] = config
    aliases: dict[str, list[str]] = {}
    for w in workloads:
        for item in w.spec.add_host:
            name, ip = parse_add_host(item)
            aliases.setdefault(ip, []).append(name)
    if aliases:
        pod["hostAliases"] = [{"ip": ip, "hostnames": names} for ip, names in aliases.items()]


def _service(app: str, ports: list[PortMapping]) -> dict[str, Any]:
    seen: dict[tuple[int, str], dict[str, Any]] = {}
    for p in ports:
        seen.setdefault((p.container_port, p.proto), {
            "name": f"{p.container_port}-{p.proto}", "port": p.container_port,
            "targetPort": p.container_port, "protocol": p.proto.upper(),
        })
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": app},
            "spec": {"selector": {"app": app}, "ports": list(seen.values())}}


def to_yaml(manifest: Manifest) -> str:
    """The objects as one YAML stream; the notes head it as comments."""
    import yaml

    head = "".join(f"# NOT EXPRESSED: {n}\n" for n in manifest.notes)
    body = yaml.safe_dump_all(manifest.objects, sort_keys=False, default_flow_style=False)
    return f"# Generated by carrier kube generate.\n{head}---\n{body}"
