"""Options that several commands share, spelled as Docker spells them."""

from __future__ import annotations

from typing import Annotated

from cyclopts import Parameter

EnvOption = Annotated[list[str] | None, Parameter(
    name=["-e", "--env"], consume_multiple=False,
    help="Set an environment variable, KEY=VALUE (repeatable).")]
WorkdirOption = Annotated[str | None, Parameter(name=["-w", "--workdir"],
                                                help="Working directory inside the container.")]
UserOption = Annotated[str | None, Parameter(name=["-u", "--user"],
                                             help="User (name or uid[:gid]) to run as.")]
