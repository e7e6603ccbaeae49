"""cyclopts' argument collections, built once per command and process instead of per parse.

cyclopts builds a command's :class:`~cyclopts.ArgumentCollection` from its signature (type hints,
``Parameter`` annotations, groups) every time it parses: ``run``'s ~60 options cost ~8 ms of
CPU per build, and one ``carrier run`` command line builds it twice (the meta app's scoping,
then the command's own parse) and the meta app's three times. :class:`CachedApp` keeps one
pristine collection per command and hands out copies (a collection records the tokens and
values of the parse it served, so it is never reused as is); :func:`build_collections` builds
the usual ones in the fork server, so every fork inherits them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

from cyclopts import App, Argument, ArgumentCollection, Parameter


class CachedApp(App):
    """A cyclopts ``App`` whose argument collections are built once (commands registered on it,
    and its meta app, are of this class too: cyclopts makes them with ``type(self)``)."""

    def assemble_argument_collection(
        self, *, default_parameter: Parameter | None = None, parse_docstring: bool = False
    ) -> ArgumentCollection:
        """A fresh copy of this app's collection in the current app stack, built on first use."""
        if default_parameter is not None:
            return super().assemble_argument_collection(
                default_parameter=default_parameter, parse_docstring=parse_docstring)
        # The same command under another stack (another parent's default_parameter) differs.
        context = self.app_stack.default_parameter
        entries: list[_Entry] = self.__dict__.setdefault("_carrier_collections", [])
        for entry in entries:
            if entry.parse_docstring == parse_docstring and entry.context == context:
                return entry.copy()
        collection = super().assemble_argument_collection(parse_docstring=parse_docstring)
        entry = _Entry(parse_docstring, context, collection)
        entries.append(entry)
        return entry.copy()


class _Entry:
    """One pristine collection, and what it was built for."""

    def __init__(self, parse_docstring: bool, context: Parameter,
                 collection: ArgumentCollection) -> None:
        self.parse_docstring = parse_docstring
        self.context = context
        self.collection = collection
        # Shared, never copied: the frozen Parameters and the type hints (immutable, and most
        # of the copying time). Tokens, values and field infos are copied: a parse sets them.
        self._shared: dict[int, Any] = {}
        for argument in _walk(collection):
            for shared in (argument.parameter, argument.hint, argument.field_info.annotation):
                self._shared[id(shared)] = shared

    def copy(self) -> ArgumentCollection:
        """A copy of the collection that a parse may fill (~1 ms for ``run``)."""
        return copy.deepcopy(self.collection, dict(self._shared))


def _walk(collection: ArgumentCollection) -> Iterator[Argument]:
    for argument in collection:
        yield argument
        yield from _walk(argument.children)


# Command lines whose collections the fork server builds before it forks: the commands scripts
# and the tests run most, one with a global option before it.
WARM = (
    ("--log-level", "warning", "run", "--rm", "img", "true"), ("create", "img"),
    ("exec", "c", "true"), ("ps",), ("rm", "c"), ("stop", "c"), ("inspect", "c"), ("logs", "c"),
    ("start", "c"),
)


def build_collections(app: App, split: Callable[[list[str]], list[str]]) -> None:
    """Build the collections of the :data:`WARM` command lines as their parses would, without
    running them: the meta app's parse, then the command's own parse of the tokens the meta
    app passes on (after *split*, as the meta app does)."""
    for tokens in WARM:
        _meta, bound, _ignored = app.meta.parse_args(list(tokens))
        app.parse_args(split(list(bound.arguments["tokens"])))
