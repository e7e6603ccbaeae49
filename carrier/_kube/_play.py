"""Kubernetes manifests to a supervision tree (``kube play``): the same :class:`Tree` that
``carrier up`` runs, so that there is one way to run containers.

Each Pod's containers are members named ``<pod>-<container>``. As in Kubernetes and Podman, an
infra member ``<pod>-infra`` (``catatonit -P``, bound from the host into the Pod's first image,
as ``--init`` binds it) owns the Pod's network namespace on the tree's network (called there by
the Pod's name and by the names of the Services that select it); every other container joins it
(``container:NAME``), so that an app container's restart keeps the Pod's network. Init
containers run first, one after the other, each to completion. ConfigMaps and Secrets become
environment variables and files (written under the tree's state directory and bound
read-only); PersistentVolumeClaims become named volumes.
"""

from __future__ import annotations

import base64
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._runtime._bundle import INIT_PATH, init_binary
from .._supervision._treespec import ContainerDecl, Tree
from .._util._errors import CarrierError
from ._expand import expand
from ._generate import tcp_check
from ._manifests import Manifests

_RESTART = {"Always": "always", "OnFailure": "on-failure", "Never": "no"}
_PULL = {"Always": "always", "IfNotPresent": "missing", "Never": "never"}
_SIZE = re.compile(r"^(\d+)(Ki|Mi|Gi|k|M|G)?$")


@dataclass
class Plan:
    """What ``kube play`` runs: the tree, the files to write first (relative to the tree's
    files directory: content and mode), and what Carrier cannot run or runs differently."""

    tree: Tree
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    unsupported: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Pod:
    name: str
    labels: dict[str, str]
    spec: dict[str, Any]
    restart: str  # Kubernetes' restartPolicy


def tree_name(path: Path) -> str:
    """The tree a manifest file runs as: its file name without the extension."""
    name = re.sub(r"[^a-zA-Z0-9_.-]+", "-", path.stem).lstrip("_.-")[:64]
    return name or "kube"


def plan(manifests: Manifests, path: Path, files_dir: Path) -> Plan:
    """The tree (named after *path*) that runs *manifests*; files go under *files_dir*."""
    out = Plan(Tree(tree_name(path), path, []))
    pods = _pods(manifests, out)
    if not pods:
        raise CarrierError(f"{path}: no Pod or Deployment to run")
    services = _services(manifests, pods, out)
    translated = [_Translate(pod, manifests, services.get(pod.name, []), files_dir, out)
                  for pod in pods]
    infra = {t.pod.name: t.infra() for t in translated}  # every Pod's network is up (and every
    for t in translated:  # name on the tree's network known) before any app container joins
        t.run(infra[t.pod.name])
    names = [d.name for d in out.tree.containers]
    if len(set(names)) != len(names):
        raise CarrierError(f"{path}: two containers are both named "
                           f"{next(n for n in names if names.count(n) > 1)} (<pod>-<container>; "
                           "<pod>-infra is each Pod's infra container)")
    return out


def _pods(manifests: Manifests, out: Plan) -> list[_Pod]:
    pods = []
    for obj in manifests.objects:
        meta = obj["metadata"]
        if obj["kind"] == "Pod":
            spec = obj["spec"]
            pods.append(_Pod(meta["name"], dict(meta.get("labels") or {}), spec,
                             spec.get("restartPolicy") or "Always"))
        elif obj["kind"] == "Deployment":
            spec = obj["spec"]
            replicas = spec.get("replicas", 1)
            if replicas != 1:
                out.unsupported.append(f"Deployment {meta['name']}: replicas {replicas}: one "
                                       "replica (one Pod) is run")
            template = spec["template"]
            pods.append(_Pod(meta["name"], dict((template.get("metadata") or {}).get("labels") or {}),
                             template["spec"], "Always"))
    return pods


def _services(manifests: Manifests, pods: list[_Pod], out: Plan
              ) -> dict[str, list[dict[str, Any]]]:
    """The Services of each Pod (those whose selector matches its labels)."""
    of: dict[str, list[dict[str, Any]]] = {}
    for svc in manifests.of("Service"):
        name, spec = svc["metadata"]["name"], svc.get("spec") or {}
        where = f"Service {name}"
        kind = spec.get("type", "ClusterIP")
        if kind not in ("ClusterIP", "NodePort"):
            out.unsupported.append(f"{where}: type {kind} is not supported (ClusterIP, NodePort)")
        selector = spec.get("selector") or {}
        chosen = [p for p in pods if selector and
                  all(p.labels.get(k) == v for k, v in selector.items())]
        if not chosen:
            out.warnings.append(f"{where}: selects no Pod in this file; not run")
            continue
        if len(chosen) > 1:
            out.unsupported.append(f"{where}: selects {len(chosen)} Pods; it is given to the "
                                   f"first, {chosen[0].name}")
        of.setdefault(chosen[0].name, []).append(svc)
    return of


class _Translate:
    """One Pod as tree members."""

    def __init__(self, pod: _Pod, manifests: Manifests, services: list[dict[str, Any]],
                 files_dir: Path, out: Plan) -> None:
        self.pod = pod
        self.where = f"Pod {pod.name}"
        self.configmaps = manifests.named("ConfigMap")
        self.secrets = manifests.named("Secret")
        self.services = services
        self.files_dir = files_dir
        self.out = out
        self.volumes = {v["name"]: v for v in pod.spec.get("volumes") or []}
        self.containers: list[dict[str, Any]] = pod.spec["containers"]
        self.member = {c["name"]: f"{pod.name}-{c['name']}"
                       for c in [*(pod.spec.get("initContainers") or []), *self.containers]}

    def run(self, infra: str | None) -> None:
        """The Pod's init and app containers, in the network of its *infra* member."""
        spec, restart = self.pod.spec, _RESTART[self.pod.restart]
        base: dict[str, str] = {}
        network: dict[str, Any] = {"network": "host"}
        if infra is not None:
            network = {"network": f"container:{self.out.tree.container_name(infra)}",
                       "hostname": spec.get("hostname") or self.pod.name}
            base = {infra: "started"}
        waits = base
        for init in spec.get("initContainers") or []:
            options = self._options(init, "no" if restart == "no" else "on-failure")
            self._add(init, {**options, **network}, waits)
            waits = {**base, self.member[init["name"]]: "completed"}
        for c in self.containers:
            self._add(c, {**self._options(c, restart), **network}, waits)

    def infra(self) -> str | None:
        """The Pod's infra member, which owns its network namespace for the Pod's whole life
        (Kubernetes' pause container): ``catatonit -P`` does nothing but wait, so it never
        restarts on its own; its name (None for a Pod on the host's network)."""
        if self.pod.spec.get("hostNetwork"):
            return None
        name = f"{self.pod.name}-infra"
        try:
            catatonit = init_binary()
        except CarrierError:
            raise CarrierError(f"{self.where}: its infra container needs catatonit, which is not "
                               "on PATH (Debian: apt install catatonit)") from None
        options: dict[str, Any] = {
            "restart": "always", "entrypoint": [INIT_PATH, "-P"],
            "volumes": [f"{catatonit}:{INIT_PATH}:ro"], "stop_timeout": 1.0,
        }
        self._owner(options)
        image = self.containers[0]
        self.out.tree.containers.append(ContainerDecl(
            name, image["image"], [], options, {}, _PULL[image.get("imagePullPolicy", "IfNotPresent")]))
        return name

    def _add(self, c: dict[str, Any], options: dict[str, Any], depends: dict[str, str]) -> None:
        command = options.pop("command", [])
        pull = _PULL[c.get("imagePullPolicy", "IfNotPresent")]
        self.out.tree.containers.append(ContainerDecl(
            self.member[c["name"]], c["image"], command, options, depends, pull))

    def _owner(self, options: dict[str, Any]) -> None:
        """The Pod's network: the tree's, called by the Pod's and its Services' names; the
        Pod's host ports and its Services' ports published; its DNS settings."""
        spec = self.pod.spec
        options["network_aliases"] = [self.pod.name, *(s["metadata"]["name"] for s in self.services)]
        options["hostname"] = spec.get("hostname") or self.pod.name
        ports: dict[tuple[int, str], str] = {}
        for c in self.containers:
            for p in c.get("ports") or []:
                if p.get("hostPort"):
                    proto = p.get("protocol", "TCP").lower()
                    ip = p.get("hostIP")
                    ports[(p["hostPort"], proto)] = (f"{ip}:" if ip else "") + \
                        f"{p['hostPort']}:{p['containerPort']}/{proto}"
        for svc in self.services:
            sname = svc["metadata"]["name"]
            for p in svc["spec"].get("ports") or []:
                proto = p.get("protocol", "TCP").lower()
                target = self._port(p.get("targetPort", p["port"]), f"Service {sname}")
                if target != p["port"]:
                    self.out.unsupported.append(
                        f"Service {sname}: port {p['port']} differs from targetPort {target}: "
                        f"{sname}:{target} is what answers on the tree's network")
                host = p.get("nodePort") or p["port"]
                if host < 1024:
                    self.out.warnings.append(
                        f"Service {sname}: port {host} is not published on the host (rootless "
                        f"cannot bind below 1024; give a nodePort); {sname}:{target} answers "
                        "on the tree's network")
                    continue
                ports.setdefault((host, proto), f"127.0.0.1:{host}:{target}/{proto}")
        if ports:
            options["ports"] = list(ports.values())
        dns = spec.get("dnsConfig") or {}
        if dns.get("nameservers"):
            options["dns"] = list(dns["nameservers"])
        if dns.get("searches"):
            options["dns_search"] = list(dns["searches"])
        if dns.get("options"):
            options["dns_option"] = [o["name"] + (f":{o['value']}" if o.get("value") else "")
                                     for o in dns["options"]]
        hosts = [f"{h}:{a['ip']}" for a in spec.get("hostAliases") or [] for h in a.get("hostnames") or []]
        if hosts:
            options["add_host"] = hosts

    def _port(self, port: int | str, where: str) -> int:
        """A port number, or a container port's name resolved in this Pod."""
        if isinstance(port, int):
            return port
        if port.isdigit():
            return int(port)
        for c in self.containers:
            for p in c.get("ports") or []:
                if p.get("name") == port:
                    return int(p["containerPort"])
        raise CarrierError(f"{where}: no container port named {port!r} in Pod {self.pod.name}")

    def _options(self, c: dict[str, Any], restart: str) -> dict[str, Any]:
        where = f"{self.where}: container {c['name']}"
        env = self._env(c, where)
        options: dict[str, Any] = {"restart": restart,
                                   "command": [expand(a, env) for a in c.get("args") or []]}
        if c.get("command") is not None:
            options["entrypoint"] = [expand(a, env) for a in c["command"]]
        if env:
            options["env"] = [f"{k}={v}" for k, v in env.items()]
        if c.get("workingDir"):
            options["workdir"] = c["workingDir"]
        security = c.get("securityContext") or {}
        if security.get("runAsUser") is not None:
            options["user"] = str(security["runAsUser"]) + (
                f":{security['runAsGroup']}" if security.get("runAsGroup") is not None else "")
        if security.get("readOnlyRootFilesystem"):
            options["read_only"] = True
        if c.get("tty"):
            options["tty"] = True
        grace = self.pod.spec.get("terminationGracePeriodSeconds")
        if grace is not None:
            options["stop_timeout"] = float(grace)
        self._mounts(c, options, where)
        self._probes(c, options, restart, where)
        return options

    def _env(self, c: dict[str, Any], where: str) -> dict[str, str]:
        """The container's environment; an ``env`` value's ``$(VAR)`` refers to what is
        defined before it (``envFrom``, earlier ``env`` items), as in Kubernetes."""
        env: dict[str, str] = {}
        for source in c.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                ref = source["configMapRef"]
                data = self._data("ConfigMap", ref["name"], ref.get("optional"), where)
            else:
                ref = source["secretRef"]
                data = self._data("Secret", ref["name"], ref.get("optional"), where)
            env.update({prefix + k: v.decode() for k, v in data.items()})
        for item in c.get("env") or []:
            if "valueFrom" not in item:
                env[item["name"]] = expand(str(item.get("value", "")), env)
                continue
            frm = item["valueFrom"]
            kind, ref = (("ConfigMap", frm["configMapKeyRef"]) if "configMapKeyRef" in frm
                         else ("Secret", frm["secretKeyRef"]))
            data = self._data(kind, ref["name"], ref.get("optional"), where)
            if ref["key"] in data:
                env[item["name"]] = data[ref["key"]].decode()
            elif not ref.get("optional"):
                raise CarrierError(f"{where}: env {item['name']}: {kind} {ref['name']} has no "
                                   f"key {ref['key']!r}")
        return env

    def _data(self, kind: str, name: str, optional: bool | None, where: str) -> dict[str, bytes]:
        """A ConfigMap's or Secret's keys and values (a Secret's data is base64)."""
        obj = (self.configmaps if kind == "ConfigMap" else self.secrets).get(name)
        if obj is None:
            if optional:
                return {}
            raise CarrierError(f"{where}: no {kind} {name!r} in this file")
        data: dict[str, bytes] = {}
        for key, value in (obj.get("binaryData") or {}).items():
            data[key] = base64.b64decode(value)
        for key, value in (obj.get("data") or {}).items():
            data[key] = base64.b64decode(value) if kind == "Secret" else str(value).encode()
        for key, value in (obj.get("stringData") or {}).items():
            data[key] = str(value).encode()
        return data

    def _mounts(self, c: dict[str, Any], options: dict[str, Any], where: str) -> None:
        volumes: list[str] = []
        tmpfs: list[str] = []
        for m in c.get("volumeMounts") or []:
            vol = self.volumes.get(m["name"])
            if vol is None:
                raise CarrierError(f"{where}: volumeMount {m['name']}: no such volume in the Pod")
            ro = ":ro" if m.get("readOnly") else ""
            sub = _relative(m.get("subPath", ""), f"{where}: volumeMount {m['name']}: subPath")
            if sub and ("configMap" not in vol and "secret" not in vol):
                self.out.unsupported.append(f"{where}: volumeMount {m['name']}: subPath is "
                                            "supported for configMap and secret volumes only")
                sub = ""
            if "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"]
                ro = ":ro" if m.get("readOnly") or claim.get("readOnly") else ""
                volumes.append(f"{claim['claimName']}:{m['mountPath']}{ro}")
            elif "hostPath" in vol:
                volumes.append(f"{vol['hostPath']['path']}:{m['mountPath']}{ro}")
            elif "emptyDir" in vol:
                empty = vol["emptyDir"] or {}
                if empty.get("medium") == "Memory":
                    size = _SIZE.match(str(empty.get("sizeLimit", "")))
                    opts = f":size={size[1]}{(size[2] or '')[:1].lower()}" if size else ""
                    tmpfs.append(f"{m['mountPath']}{opts}")
                else:  # shared by the Pod's containers: a directory of the tree's
                    rel = f"{self.pod.name}/{m['name']}"
                    self.out.files.setdefault(f"{rel}/", (b"", 0o755))
                    volumes.append(f"{self.files_dir / rel}:{m['mountPath']}{ro}")
            else:
                rel = self._files(vol, where)
                source = self.files_dir / rel / sub if sub else self.files_dir / rel
                volumes.append(f"{source}:{m['mountPath']}:ro")
        if volumes:
            options["volumes"] = volumes
        if tmpfs:
            options["tmpfs"] = tmpfs

    def _files(self, vol: dict[str, Any], where: str) -> str:
        """A configMap or secret volume's files, to write; their directory, relative."""
        kind, src = ("ConfigMap", vol["configMap"]) if "configMap" in vol else ("Secret", vol["secret"])
        name = src.get("name") or src.get("secretName")
        data = self._data(kind, name, src.get("optional"), where)
        rel = f"{self.pod.name}/{vol['name']}"
        self.out.files.setdefault(f"{rel}/", (b"", 0o755))
        items = src.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            if item["key"] not in data:
                if src.get("optional"):
                    continue
                raise CarrierError(f"{where}: volume {vol['name']}: {kind} {name} has no key "
                                   f"{item['key']!r}")
            mode = item.get("mode", src.get("defaultMode", 0o644))
            path = _relative(item["path"], f"{where}: volume {vol['name']}: path")
            self.out.files[f"{rel}/{path}"] = (data[item["key"]], mode)
        return rel

    def _probes(self, c: dict[str, Any], options: dict[str, Any], restart: str, where: str) -> None:
        """One health check per container: the liveness probe (a failure restarts, or kills
        under restartPolicy Never), else the startup or readiness probe (marks readiness)."""
        chosen = [(k, c[k]) for k in ("livenessProbe", "startupProbe", "readinessProbe") if c.get(k)]
        if not chosen:
            return
        kind, probe = chosen[0]
        for other, p in chosen[1:]:
            if self._command(p, where) != self._command(probe, where):
                self.out.warnings.append(f"{where}: one health check per container: {kind} is "
                                         f"run, {other} is not")
        if probe.get("successThreshold", 1) != 1:
            self.out.unsupported.append(f"{where}: {kind}.successThreshold "
                                        f"{probe['successThreshold']}: 1 is used")
        options.update(
            health_cmd=self._command(probe, where),
            health_interval=float(probe.get("periodSeconds", 10)),
            health_timeout=float(probe.get("timeoutSeconds", 1)),
            health_retries=int(probe.get("failureThreshold", 3)),
            health_start_period=float(probe.get("initialDelaySeconds", 0)),
            health_on_failure="none" if kind != "livenessProbe" else
            ("kill" if restart == "no" else "restart"),
        )

    def _command(self, probe: dict[str, Any], where: str) -> str:
        """A probe as the shell command a health check runs inside the container."""
        if "exec" in probe:
            argv = list(probe["exec"].get("command") or [])
            if len(argv) == 3 and argv[0] in ("/bin/sh", "sh") and argv[1] == "-c":
                return str(argv[2])
            return shlex.join(argv)
        timeout = int(probe.get("timeoutSeconds", 1))
        if "tcpSocket" in probe:
            tcp = probe["tcpSocket"]
            port = self._port(tcp["port"], where)
            return tcp_check(shlex.quote(tcp.get("host") or "127.0.0.1"), port, timeout)
        http = probe["httpGet"]
        if http.get("scheme", "HTTP") != "HTTP":
            self.out.unsupported.append(f"{where}: httpGet scheme {http['scheme']}: HTTP is used")
        port = self._port(http["port"], where)
        url = f"http://{http.get('host') or '127.0.0.1'}:{port}{http.get('path') or '/'}"
        return f"wget -q -T {timeout} -O /dev/null {shlex.quote(url)}"


def _relative(path: str, what: str) -> str:
    """*path* if it stays below the directory it is joined to (no absolute path, no ``..``),
    as the API server requires of a volume item's path and a subPath; else a one-line error."""
    if path and (path.startswith("/") or ".." in path.split("/")):
        raise CarrierError(f"{what} {path!r} must be relative and must not contain '..'")
    return path

