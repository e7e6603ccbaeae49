"""Kubernetes manifests read for ``kube play``: parsed by PyYAML, validated strictly against a
pinned Kubernetes version's schemas (kubernetes-validate), then checked against what Carrier
can run.

What Kubernetes refuses is an error. What Kubernetes accepts but Carrier cannot run (a kind, a
field, a value) is named, each as one item, so that the CLI refuses it or, with
``--ignore-unsupported``, warns; it is never dropped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._util._errors import CarrierError

KUBERNETES = "1.36.0"  # the schemas manifests are validated against (as kube generate's tests)

# What Carrier runs, field by field: a dict is an object (its allowed keys), a list holds the
# allowed shape of each item, True is any value (free-form maps such as labels or data).
_META = {"name": True, "namespace": True, "labels": True, "annotations": True}
_KEY_REF = {"name": True, "key": True, "optional": True}
_PROBE = {
    "exec": {"command": True}, "tcpSocket": {"port": True, "host": True},
    "httpGet": {"path": True, "port": True, "host": True, "scheme": True},
    "initialDelaySeconds": True, "periodSeconds": True, "timeoutSeconds": True,
    "failureThreshold": True, "successThreshold": True,
}
_CONTAINER = {
    "name": True, "image": True, "imagePullPolicy": True, "command": True, "args": True,
    "workingDir": True, "tty": True, "stdin": True,
    "env": [{"name": True, "value": True,
             "valueFrom": {"configMapKeyRef": _KEY_REF, "secretKeyRef": _KEY_REF}}],
    "envFrom": [{"prefix": True, "configMapRef": {"name": True, "optional": True},
                 "secretRef": {"name": True, "optional": True}}],
    "ports": [{"name": True, "containerPort": True, "hostPort": True, "hostIP": True,
               "protocol": True}],
    "volumeMounts": [{"name": True, "mountPath": True, "readOnly": True, "subPath": True}],
    "livenessProbe": _PROBE, "readinessProbe": _PROBE, "startupProbe": _PROBE,
    "securityContext": {"runAsUser": True, "runAsGroup": True, "readOnlyRootFilesystem": True},
}
_ITEMS = [{"key": True, "path": True, "mode": True}]
_POD_SPEC = {
    "containers": [_CONTAINER], "initContainers": [_CONTAINER], "restartPolicy": True,
    "hostname": True, "hostAliases": True, "dnsConfig": True, "dnsPolicy": True,
    "terminationGracePeriodSeconds": True, "hostNetwork": True,
    "volumes": [{
        "name": True,
        "persistentVolumeClaim": {"claimName": True, "readOnly": True},
        "configMap": {"name": True, "items": _ITEMS, "defaultMode": True, "optional": True},
        "secret": {"secretName": True, "items": _ITEMS, "defaultMode": True, "optional": True},
        "emptyDir": {"medium": True, "sizeLimit": True},
        "hostPath": {"path": True, "type": True},
    }],
}
_SUPPORTED: dict[str, dict[str, Any]] = {
    "Pod": {"apiVersion": True, "kind": True, "metadata": _META, "spec": _POD_SPEC},
    "Deployment": {"apiVersion": True, "kind": True, "metadata": _META, "spec": {
        "replicas": True, "selector": True, "strategy": True, "revisionHistoryLimit": True,
        "template": {"metadata": _META, "spec": _POD_SPEC}}},
    "Service": {"apiVersion": True, "kind": True, "metadata": _META, "spec": {
        "selector": True, "type": True,
        "ports": [{"name": True, "port": True, "targetPort": True, "protocol": True,
                   "nodePort": True}]}},
    "ConfigMap": {"apiVersion": True, "kind": True, "metadata": _META, "data": True,
                  "binaryData": True, "immutable": True},
    "Secret": {"apiVersion": True, "kind": True, "metadata": _META, "data": True,
               "stringData": True, "type": True, "immutable": True},
    "PersistentVolumeClaim": {"apiVersion": True, "kind": True, "metadata": _META, "spec": {
        "accessModes": True, "resources": True, "storageClassName": True, "volumeMode": True}},
}


@dataclass
class Manifests:
    """The objects of a manifest file by kind and name, and what Carrier cannot run."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The objects of one kind, in file order."""
        return [o for o in self.objects if o["kind"] == kind]

    def named(self, kind: str) -> dict[str, dict[str, Any]]:
        """The objects of one kind by name."""
        return {o["metadata"]["name"]: o for o in self.of(kind)}


def _where(doc: int, obj: dict[str, Any]) -> str:
    name = (obj.get("metadata") or {}).get("name") if isinstance(obj, dict) else None
    return f"{obj.get('kind', '?')} {name}" if name else f"document {doc}"


def _path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}" if out else str(p)
    return out or "(top level)"


def load(path: Path) -> Manifests:
    """Read, validate and check a multi-document YAML file; raise :class:`CarrierError` for
    what is not valid Kubernetes (naming the file, object, field and reason)."""
    import kubernetes_validate  # type: ignore[import-untyped]
    import yaml

    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except OSError as e:
        raise CarrierError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise CarrierError(f"{path}: invalid YAML: {' '.join(str(e).split())}") from None
    out = Manifests()
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
            raise CarrierError(f"{path}: document {i}: not a Kubernetes object (no kind)")
        where = f"{path}: {_where(i, doc)}"
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            if doc["kind"] in _SUPPORTED:
                raise CarrierError(f"{where}: unknown apiVersion {doc.get('apiVersion')!r}") from None
            out.unsupported.append(f"{where}: kind {doc['kind']} is not supported")
            continue
        except kubernetes_validate.ValidationError as e:
            raise CarrierError(f"{where}: {_path(e.absolute_path)}: "
                               f"{' '.join(e.message.split())}") from None
        if doc["kind"] not in _SUPPORTED:
            out.unsupported.append(f"{where}: kind {doc['kind']} is not supported")
            continue
        _fields(doc, _SUPPORTED[doc["kind"]], [], where, out.unsupported)
        _names(doc, where)
        out.objects.append(doc)
    names: set[tuple[str, str]] = set()
    for o in out.objects:
        key = (o["kind"], o["metadata"]["name"])
        if key in names:
            raise CarrierError(f"{path}: {key[0]} {key[1]}: defined twice")
        names.add(key)
    return out


def _fields(value: Any, allowed: Any, at: list[str | int], where: str,
            unsupported: list[str]) -> None:
    """Name every field of *value* that *allowed* does not list."""
    if allowed is True or value is None:
        return
    if isinstance(allowed, list):
        for i, item in enumerate(value):
            _fields(item, allowed[0], [*at, i], where, unsupported)
        return
    for key, sub in value.items():
        if key not in allowed:
            unsupported.append(f"{where}: field {_path([*at, key])} is not supported")
        else:
            _fields(sub, allowed[key], [*at, key], where, unsupported)


_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _names(doc: dict[str, Any], where: str) -> None:
    """The names the API server would check (the schemas do not): an object's name is a DNS
    subdomain, a container's and a volume's a DNS label. They become container names and
    paths here, so anything else (``..``, ``/``) is refused before it is used."""
    name = doc["metadata"].get("name")
    if not isinstance(name, str) or len(name) > 253 or not _SUBDOMAIN.match(name):
        raise CarrierError(f"{where}: metadata.name {name!r} is not a DNS subdomain "
                           "(lowercase letters, digits, '-' and '.')")
    spec = doc.get("spec") or {}
    if doc["kind"] == "Deployment":
        spec = (spec.get("template") or {}).get("spec") or {}
    for key in ("containers", "initContainers", "volumes"):
        for item in spec.get(key) or []:
            label = item.get("name")
            if not isinstance(label, str) or len(label) > 63 or not _LABEL.match(label):
                raise CarrierError(f"{where}: {key} name {label!r} is not a DNS label "
                                   "(lowercase letters, digits and '-')")

