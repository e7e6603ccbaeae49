"""Options that several commands share, spelled as Docker spells them."""

from __future__ import annotations

from typing import Annotated

from cyclopts import Parameter

EnvOption = Annotated[list[str] | None, Parameter(name=["-e", "--env"], consume_multiple=False)]
WorkdirOption = Annotated[str | None, Parameter(name=["-w", "--workdir"])]
UserOption = Annotated[str | None, Parameter(name=["-u", "--user"])]
