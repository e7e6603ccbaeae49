"""``--format`` with Go templates (ps, images, inspect, volume ls/inspect, network ls/inspect),
as Podman renders them, run rootless against real containers, images, volumes and networks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import Carrier, Result


def stored(root: Path) -> dict[str, str]:
    """Every file under the Carrier root and a digest of its content (links: their target)."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out[str(path)] = "-> " + str(path.readlink())
        elif path.is_file():
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def ok(res: Result) -> str:
    """The output of a command that must have succeeded."""
    assert res.code == 0, res.err
    return res.out


class TestFormat:
    def test_ps_templates(self, carrier: Carrier, image: str) -> None:
        """ps --format renders Go templates over Podman's field names, with range/if, json and
        the table form's header row."""
        ok(carrier("run", "-d", "--name", "web", "--label", "tier=front", image, "sleep", "1000"))
        ok(carrier("create", "--name", "idle", image, "true"))
        assert ok(carrier("ps", "--format", "{{.Names}} {{.State}}")) == "web running\n"
        lines = ok(carrier("ps", "-a", "--format", "{{.Names}}={{.Status}}")).splitlines()
        assert sorted(lines)[0] == "idle=Created"
        assert sorted(lines)[1].startswith("web=Up ")
        out = ok(carrier("ps", "--format", "{{range $k, $v := .Labels}}{{$k}}:{{$v}}{{end}} "
                         "{{if eq .State \"running\"}}up{{else}}down{{end}} {{.Command}}"))
        assert out == "tier:front up sleep 1000\n"
        row = json.loads(ok(carrier("ps", "--format", "{{json .}}")))
        assert (row["Names"], row["Image"], len(row["ID"])) == ("web", "busybox", 12)
        table = ok(carrier("ps", "--format", "table {{.ID}}\\t{{.Names}}")).splitlines()
        assert table[0].split("   ") == ["CONTAINER ID", "NAMES"]
        assert table[1].endswith("   web")
        assert len(table) == 2
        assert ok(carrier("rm", "-f", "web", "idle")) == "web\nidle\n"
        table = ok(carrier("ps", "-a", "--format", "table {{.ID}}\t{{.Names}}"))
        assert table == "CONTAINER ID   NAMES\n"  # the header even when nothing is listed

    def test_inspect_templates(self, carrier: Carrier, image: str) -> None:
        """inspect shows a container and an image in Podman's fields, as JSON or through a
        template ({{.State.Status}}, {{json .Config.Labels}}, {{range}})."""
        ok(carrier("create", "--name", "c", "--label", "a=1", image, "echo", "hi", "there"))
        assert ok(carrier("inspect", "--format", "{{.State.Status}}", "c")) == "created\n"
        ok(carrier("start", "-a", "c"))
        out = ok(carrier("inspect", "-f", "{{.Name}} {{.State.Status}} {{.State.ExitCode}} "
                         "{{json .Config.Labels}} {{range .Config.Cmd}}<{{.}}>{{end}}", "c"))
        assert out == 'c exited 0 {"a":"1"} <echo><hi><there>\n'
        data = json.loads(ok(carrier("inspect", "c")))
        assert data[0]["Name"] == "c"
        assert data[0]["Path"] == "echo"
        assert data[0]["Args"] == ["hi", "there"]
        image_id = ok(carrier("inspect", "--type", "image", "-f", "{{.Id}}", image)).strip()
        assert ok(carrier("images", "-q")).strip() == image_id[:12]
        out = ok(carrier("inspect", "-f", "{{.Id}} {{range .RepoTags}}{{.}}{{end}}", image))
        assert out == f"{image_id} docker.io/library/busybox:latest\n"
        ok(carrier("rm", "c"))

    def test_images_volumes_networks(self, carrier: Carrier, image: str) -> None:
        """images, volume ls/inspect and network ls/inspect take Go templates and the table
        form, with Podman's field names."""
        assert ok(carrier("images", "--format", "{{.Repository}}:{{.Tag}}")) == "busybox:latest\n"
        table = ok(carrier("images", "--format", "table {{.Repository}}\t{{.Tag}}")).splitlines()
        assert [c.split() for c in table] == [["REPOSITORY", "TAG"], ["busybox", "latest"]]
        ok(carrier("volume", "create", "--label", "k=v", "data"))
        assert ok(carrier("volume", "ls", "--format", "{{.Name}} {{.Driver}}")) == "data local\n"
        mount = ok(carrier("volume", "inspect", "--format", "{{.Mountpoint}}", "data")).strip()
        assert Path(mount).is_dir()
        assert ok(carrier("inspect", "-f", "{{.Labels.k}}", "data")) == "v\n"
        ok(carrier("network", "create", "--subnet", "10.89.77.0/24", "net1"))
        assert ok(carrier("network", "ls", "--format", "{{.Name}} {{.Driver}}")) == "net1 bridge\n"
        out = ok(carrier("network", "inspect", "--format",
                         "{{.Name}} {{range .Subnets}}{{.Subnet}} {{.Gateway}}{{end}}", "net1"))
        assert out == "net1 10.89.77.0/24 10.89.77.1\n"
        assert json.loads(ok(carrier("network", "inspect", "net1")))[0]["name"] == "net1"
        assert ok(carrier("inspect", "--type", "network", "-f", "{{.Internal}}", "net1")) == "false\n"
        table = ok(carrier("volume", "ls", "--format", "table {{.Name}}")).splitlines()
        assert table == ["VOLUME NAME", "data"]

    @pytest.mark.parametrize("args", [
        ("ps", "-a", "--format", "{{.Names"),
        ("ps", "-a", "--format", "{{.Nope}}"),
        ("images", "--format", "{{range}}{{end}}"),
        ("inspect", "-f", "{{.State.Nope}}", "c"),
        ("inspect", "-f", "{{nofunc .Name}}", "c"),
        ("volume", "inspect", "-f", "{{if}}{{end}}", "vol"),
        ("network", "ls", "--format", "{{.Name"),
        ("inspect", "--type", "volume", "c"),
    ])
    def test_bad_template(self, carrier: Carrier, image: str, args: tuple[str, ...]) -> None:
        """A template that does not parse, or names a field or function that does not exist,
        is one line on stderr, exit 125, and nothing stored changes."""
        ok(carrier("create", "--name", "c", image, "true"))
        ok(carrier("volume", "create", "vol"))
        ok(carrier("network", "create", "n"))
        before = stored(carrier.root)
        res = carrier(*args)
        assert res.code == 125, (res.out, res.err)
        assert res.err.startswith("carrier: "), res.err
        assert res.err.count("\n") == 1, res.err
        assert res.out == ("[]\n" if args[:2] == ("inspect", "--type") else "")
        assert stored(carrier.root) == before
        ok(carrier("rm", "c"))
