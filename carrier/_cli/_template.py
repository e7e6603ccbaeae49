"""``--format`` with Go templates, as Podman renders them: ``{{.State.Status}}``, ``{{json .}}``,
``{{range}}``/``{{if}}``, and the ``table`` form that prints a header row first.

The templates are evaluated by gotpl, a pure-Python implementation of Go's text/template
(docs/choices.md); Carrier only adds Podman's extra functions, the ``table`` header and the
column alignment of tab-separated output.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._util._errors import CarrierError

# What is not a template: the built-in outputs every --format also takes.
PLAIN = ("", "table", "json")


def is_template(fmt: str) -> bool:
    """Whether *fmt* is a Go template (as opposed to ``table`` or ``json``)."""
    return fmt.strip() not in PLAIN


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _join(items: Sequence[Any], sep: str) -> str:
    return sep.join(str(i) for i in items)


# Podman's additions to Go's built-ins that Carrier offers too (not its pad and truncate).
FUNCTIONS: dict[str, Callable[..., object]] = {
    "json": _json,
    "lower": lambda s: str(s).lower(),
    "upper": lambda s: str(s).upper(),
    "title": lambda s: str(s).title(),
    "join": _join,
    "split": lambda s, sep: str(s).split(sep),
}


def header_of(key: str) -> str:
    """Podman's header for a field: its name in capitals, words split (``CreatedAt`` ->
    ``CREATED AT``)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", key).upper()


def _headers(sample: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """The data the header row is rendered from: each field's header in place of its value."""
    out: dict[str, Any] = {}
    for key, value in sample.items():
        if isinstance(value, Mapping) and key not in ("Labels", "Options"):
            out[key] = _headers(value, {})
        else:
            out[key] = names.get(key, header_of(key))
    return out


def render(fmt: str, items: Sequence[Mapping[str, Any]], *,
           headers: Mapping[str, str] | None = None, keys: Sequence[str] = ()) -> str:
    """Render each of *items* with the Go template *fmt*, one line each (``table ...``: a
    header row first, named by *headers* or from the field names, *keys* being the fields when
    there are no items; columns aligned at tabs). Bad templates are one-line CarrierErrors."""
    import gotpl

    text = fmt.replace("\\t", "\t").replace("\\n", "\n")
    is_table = text.startswith("table")
    if is_table:
        text = text[len("table"):].strip(" ")
    if not text.endswith("\n"):
        text += "\n"
    try:
        template = gotpl.Template(text, name="format", functions=FUNCTIONS, missing_key="error")
    except gotpl.TemplateError as e:
        raise CarrierError(f"invalid --format {fmt!r}: {_first_line(e)}") from None
    lines: list[str] = []
    try:
        if is_table:
            sample = items[0] if items else dict.fromkeys(keys, "")
            lines.append(template.render(_headers(sample, headers or {})))
        lines.extend(template.render(item) for item in items)
    except gotpl.TemplateError as e:
        raise CarrierError(f"--format {fmt!r}: {_first_line(e)}") from None
    out = "".join(lines)
    return _align(out) if is_table or "\t" in out else out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _align(text: str) -> str:
    """Pad tab-separated cells into columns (Go's tabwriter, as Podman's tables use it)."""
    rows = [line.split("\t") for line in text.split("\n")]
    if rows and rows[-1] == [""]:
        rows.pop()
    width = max((len(r) for r in rows), default=0)
    widths = [max((len(r[i]) for r in rows if i < len(r) - 1), default=0) for i in range(width)]
    return "".join("   ".join(c.ljust(widths[i]) if i < len(r) - 1 else c
                               for i, c in enumerate(r)).rstrip() + "\n" for r in rows)
