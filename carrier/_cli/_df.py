"""``carrier system df``: the disk space images, containers and volumes take, as Podman
shows it."""

from __future__ import annotations

import json

from ._format import size


def df(*, format: str = "table") -> int:
    """Show the space images, containers and volumes take, and how much removing the unused
    ones would free (--format table, json or a Go template over Type, Total, Active, Size and
    Reclaimable).

    Parameters
    ----------
    format: str
        table (default), json, or a Go template.
    """
    from .._storage._usage import usage
    from ._common import open_root
    from ._template import is_template, render

    rows = usage(open_root())
    if format.strip() == "json":
        print(json.dumps([{"Type": u.kind, "Total": u.total, "Active": u.active, "Size": u.size,
                           "Reclaimable": u.reclaimable} for u in rows], indent=2))
        return 0
    items = [{"Type": u.kind, "Total": str(u.total), "Active": str(u.active),
              "Size": size(u.size), "Reclaimable": _reclaimable(u.reclaimable, u.size)}
             for u in rows]
    if not is_template(format):
        format = "table {{.Type}}\t{{.Total}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
    print(render(format, items), end="")
    return 0


def _reclaimable(part: int, whole: int) -> str:
    """Podman's ``1.2MB (40%)``."""
    return f"{size(part)} ({round(100 * part / whole) if whole else 0}%)"
