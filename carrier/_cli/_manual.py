"""The man page's source: the app's own documentation (cyclopts writes it as reStructuredText,
from the same commands, options and docstrings as ``--help``) under a man page's title block.

``scripts/man`` turns it into ``carrier.1`` with docutils' ``rst2man``.
"""

from __future__ import annotations

import datetime as dt
import re
import sys

HEADER = """\
=========
 carrier
=========

-----------------------------------------------------------
rootless Linux containers, run and supervised from Python
-----------------------------------------------------------

:Manual section: 1
:Manual group: Carrier
:Date: {date}

"""


def manual() -> str:
    """The man page in reStructuredText."""
    from ._app import app

    argv, sys.argv = sys.argv, ["carrier"]  # usage lines name the program from argv
    try:
        body = app.generate_docs("rst", heading_level=2, max_heading_level=3, usage_name="carrier")
    finally:
        sys.argv = argv
    lines = [line for line in body.splitlines()
             if not line.startswith((".. _cyclopts", ".. contents::", "   :local:", "   :depth:"))]
    text = "\n".join(_escape(_indent_continuations(lines)))
    return HEADER.format(date=dt.date.today().isoformat()) + text + "\n"


_SPECIAL = re.compile(r"(?<!\*)\*(?!\*)|[_|`\\]")


def _escape(lines: list[str]) -> list[str]:
    """Escape reStructuredText markup in the help texts (``[a-z_]*`` is text there, not a
    reference or an emphasis), leaving cyclopts' own markup (``literal``, **bold**, headings,
    terms, directives) and literal blocks as they are."""
    out: list[str] = []
    literal = False
    for i, line in enumerate(lines):
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if literal and line and not line[0].isspace():
            literal = False
        is_markup = (literal or not line.strip() or line.startswith(("``", "..", "**"))
                     or set(line) <= set("-=^~") or (following and set(following) <= set("-=^~")))
        if not is_markup:
            parts = line.split("``")
            line = "``".join(_SPECIAL.sub(lambda m: "\\" + m.group(0), p) if n % 2 == 0 else p
                             for n, p in enumerate(parts))
        if line.rstrip().endswith("::"):
            literal = True
        out.append(line)
    return out


def _indent_continuations(lines: list[str]) -> list[str]:
    """Mend two shapes of cyclopts' output that reStructuredText misreads: a help text of
    several lines has only its first line indented (the rest would end the definition list),
    and an option without help is a bare term line right above the next term."""
    out: list[str] = []
    for line in lines:
        previous = out[-1] if out else ""
        if line.startswith("``") and previous.startswith("``"):
            out.append("")
        elif line and not line[0].isspace() and previous.startswith("    ") and previous.strip():
            indent = previous[: len(previous) - len(previous.lstrip())]
            line = indent + line
        out.append(line)
    return out


if __name__ == "__main__":  # pragma: no cover - scripts/man runs it
    sys.stdout.write(manual())
