"""The ``carrier`` command line, spelled as Docker and Podman spell it: the app, its global
options, which family module defines each command, and the entry point.

Every failure of Carrier or of its input is one line on stderr and exit code 125.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

from cyclopts import CycloptsError, Parameter, UnusedCliTokensError

from .._util._errors import CarrierError, only_leaf
from .._util._logging import configure
from . import (
    _attach,
    _containers,
    _cp,
    _df,
    _enter,
    _images,
    _inspect,
    _kill,
    _kube,
    _lifecycle,
    _network,
    _pause,
    _port,
    _registry,
    _run,
    _stats,
    _top,
    _trees,
    _version,
    _volumes,
    _wait,
)
from ._parsecache import CachedApp, build_collections

app = CachedApp(
    name="carrier",
    help="Rootless Linux containers, run and supervised from Python.",
    exit_on_error=False,
    print_error=False,
    help_on_error=False,
    result_action="return_value",
    help_flags=["--help"],
    # Flags are spelled as Docker spells them: no generated --no-X twins (--no-rm,
    # --no-no-network); the few that Docker has are declared where they belong.
    default_parameter=Parameter(negative=()),
)


@app.meta.default
def _meta(
    *tokens: Annotated[str, Parameter(show=False, allow_leading_hyphen=True)],
    root: Annotated[
        Path | None, Parameter(help="Carrier root (default: $CARRIER_ROOT or ~/.local/share/carrier).")
    ] = None,
    log_level: Annotated[Literal["debug", "info", "warning", "error"],
                         Parameter(help="Carrier's own log messages from this level on.")] = "warning",
    log_format: Annotated[Literal["auto", "console", "json"],
                          Parameter(help="Log lines for people (console), or JSON; auto: console "
                                         "on a terminal.")] = "auto",
) -> Any:
    configure(log_level, log_format)
    if root is not None:
        os.environ["CARRIER_ROOT"] = str(root.absolute())
    return app(_split_run(list(tokens)))


# Containers
app.command(_run.run)
app.command(_lifecycle.create, name="create")
app.command(_lifecycle.start)
app.command(_lifecycle.restart)
app.command(_lifecycle.rename)
app.command(_attach.attach)
app.command(_containers.ps)
app.command(_containers.stop)
app.command(_containers.rm)
app.command(_kill.kill)
app.command(_pause.pause)
app.command(_pause.unpause)
app.command(_wait.wait)
app.command(_port.port)
app.command(_top.top)
app.command(_stats.stats)
app.command(_cp.cp)
app.command(_enter.exec_, name="exec")
app.command(_enter.shell, name=["shell", "sh"])
app.command(_enter.terminal, name=["terminal", "t", "term"])
app.command(_containers.logs)
app.command(_containers.info)
app.command(_inspect.inspect)
app.command(_containers.events)
# Trees
app.command(_trees.up)
app.command(_trees.down)
# Images
app.command(_images.images)
app.command(_images.import_, name="import")
app.command(_registry.pull)
app.command(_images.load)
app.command(_images.rmi)
app.command(_images.tag)
app.command(_images.save)
app.command(_registry.login)
app.command(_registry.logout)
# Groups
# Sub-apps repeat it: the man page (generate_docs) reads each app's own default.
_NO_NEGATIVES: dict[str, Any] = {"default_parameter": Parameter(negative=())}
network_app = CachedApp(name="network", **_NO_NEGATIVES, help="Container networking.")
network_app.command(_network.check)
for _net_command in (_network.create, _network.ls, _network.inspect, _network.rm, _network.prune,
                     _network.connect, _network.disconnect):
    network_app.command(_net_command)
app.command(network_app)
volume_app = CachedApp(name="volume", **_NO_NEGATIVES,
                       help="Named volumes: storage that outlives containers.")
for _command in (_volumes.create, _volumes.ls, _volumes.inspect, _volumes.rm, _volumes.prune):
    volume_app.command(_command)
app.command(volume_app)
kube_app = CachedApp(name="kube", **_NO_NEGATIVES,
                     help="Kubernetes: write containers and trees as manifests, and play manifests.")
kube_app.command(_kube.generate)
kube_app.command(_kube.play)
app.command(kube_app)
system_app = CachedApp(name="system", **_NO_NEGATIVES, help="Machine-wide commands: info and prune.")
system_app.command(_images.system_info, name="info")
system_app.command(_images.prune)
system_app.command(_df.df)
app.command(system_app)
app.command(_version.version)


@app.command(name="help")
def _help(*command: str) -> int:
    """Show the help of Carrier, or of COMMAND (carrier help volume ls)."""
    _, _, unknown = app.parse_commands(list(command))
    if unknown:
        raise CarrierError(f"unknown command {' '.join(command)!r}: see carrier help")
    app.help_print(list(command))
    return 0


@app.command(name="completion")
def _completion(shell: Literal["bash", "zsh", "fish"]) -> int:
    """Print the shell completion script for SHELL, generated by cyclopts from this app.

    Load it with ``source <(carrier completion bash)``, or install it where the shell looks
    (bash: /usr/share/bash-completion/completions/carrier; zsh: a directory of $fpath, as
    _carrier; fish: ~/.config/fish/completions/carrier.fish).

    Parameters
    ----------
    shell: Literal["bash", "zsh", "fish"]
        The shell to complete in.
    """
    sys.stdout.write(app.generate_completion(prog_name="carrier", shell=shell))
    return 0


def _flag_names(func: Any) -> set[str]:
    """The option names of *func* that take no value (its ``bool`` parameters)."""
    names: set[str] = set()
    hints = get_type_hints(func, include_extras=True)
    for pname in inspect.signature(func).parameters:
        hint = hints.get(pname)
        base, meta = (get_args(hint)[0], get_args(hint)[1:]) if get_origin(hint) is Annotated else (hint, ())
        if base is not bool:
            continue
        spelled = [n for m in meta if isinstance(m, Parameter) for n in (m.name or ())]
        long = "--" + pname.replace("_", "-")
        names.update(spelled or [long])
        names.add(long)
    return names


_FLAGS = {"run": _flag_names(_run.run), "create": _flag_names(_run.run),
          "exec": _flag_names(_enter.exec_)}
for _name in ("shell", "sh", "terminal", "t", "term"):
    _FLAGS[_name] = _flag_names(_enter.terminal)


def _split_run(tokens: list[str]) -> list[str]:
    """Put ``--`` after the image of ``run`` (the container of ``exec``, ``shell``,
    ``terminal``), so that the command's own options stay its own, as Docker does."""
    if not tokens or tokens[0] not in _FLAGS or "--" in tokens:
        return tokens
    flags = _FLAGS[tokens[0]]
    i = 1
    while i < len(tokens):
        tok = tokens[i]
        if tok == "--help" and i == 1:
            return tokens
        if not tok.startswith("-") or tok == "-":
            return [*tokens[: i + 1], "--", *tokens[i + 1 :]]
        if tok.startswith("-") and not tok.startswith("--") and len(tok) > 2 and all(
            f"-{c}" in flags for c in tok[1:]
        ):
            tokens = [*tokens[:i], *(f"-{c}" for c in tok[1:]), *tokens[i + 1 :]]  # -it
            continue
        if tok not in flags and "=" not in tok:
            i += 1  # the option's value
        i += 1
    return tokens


def warm() -> None:
    """Build the argument collections of the usual command lines in this process (the fork
    server, before it forks), so that the commands it forks parse without building them."""
    build_collections(app, _split_run)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line; every failure of Carrier or of its input becomes one line on
    stderr and its exit code (125, Docker's convention; 130 after Ctrl-C)."""
    try:
        code = app.meta(list(sys.argv[1:] if argv is None else argv))
    except BaseException as exc:
        return failure(exc)
    return code if isinstance(code, int) else 0


def failure(exc: BaseException) -> int:
    """Report *exc* (or the one exception inside a task group's) as one line; its exit code.
    Anything that is not a failure Carrier knows is re-raised with its traceback: a bug."""
    leaf = only_leaf(exc) or exc
    if isinstance(leaf, CarrierError):
        print(f"carrier: {leaf}", file=sys.stderr)
        return leaf.exit_code
    if isinstance(leaf, UnusedCliTokensError):  # never an option taken by position
        extra = " ".join(repr(t) for t in leaf.unused_tokens or ())
        print(f"carrier: unexpected argument {extra} (options are named: see --help)",
              file=sys.stderr)
        return 125
    if isinstance(leaf, CycloptsError):
        text = str(leaf).strip()
        print(f"carrier: {text.splitlines()[0] if text else 'invalid usage'}", file=sys.stderr)
        return 125
    if isinstance(leaf, KeyboardInterrupt):
        print("carrier: interrupted", file=sys.stderr)
        return 130
    if isinstance(leaf, BrokenPipeError):  # `carrier ps | head`: the reader went away, as it may
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if isinstance(leaf, OSError):  # a tool or file Carrier needs, missing, refused or full
        where = f": {leaf.filename}" if leaf.filename else ""
        print(f"carrier: {(leaf.strerror or str(leaf)).lower()}{where}", file=sys.stderr)
        return 125
    if isinstance(leaf, SystemExit):
        return leaf.code if isinstance(leaf.code, int) else 0
    raise exc
