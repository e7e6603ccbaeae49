"""The ``carrier`` command line, spelled as Docker and Podman spell it.

Every failure of Carrier or of its input is one line on stderr and exit code 125.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, get_args, get_origin, get_type_hints

from cyclopts import App, CycloptsError, Parameter

from . import _commands as cc  # _imagecmds is imported by each image command: run needs none
from ._errors import CarrierError
from ._health import parse_duration
from ._logging import configure

app = App(
    name="carrier",
    help="Rootless Linux containers, run and supervised from Python.",
    exit_on_error=False,
    print_error=False,
    help_on_error=False,
    result_action="return_value",
    help_flags=["--help"],
)


# Options that run, exec, shell and terminal share, spelled as Docker spells them.
EnvOption = Annotated[list[str] | None, Parameter(name=["-e", "--env"], consume_multiple=False)]
WorkdirOption = Annotated[str | None, Parameter(name=["-w", "--workdir"])]
UserOption = Annotated[str | None, Parameter(name=["-u", "--user"])]


@app.meta.default
def _meta(
    *tokens: Annotated[str, Parameter(show=False, allow_leading_hyphen=True)],
    root: Annotated[
        Path | None, Parameter(help="Carrier root (default: $CARRIER_ROOT or ~/.local/share/carrier).")
    ] = None,
    log_level: Literal["debug", "info", "warning", "error"] = "warning",
    log_format: Literal["auto", "console", "json"] = "auto",
) -> Any:
    configure(log_level, log_format)
    if root is not None:
        os.environ["CARRIER_ROOT"] = str(root.absolute())
    return app(_split_run(list(tokens)))


@app.command
def run(
    image: str,
    *command: str,
    rm: bool = False,
    detach: Annotated[bool, Parameter(name=["-d", "--detach"])] = False,
    interactive: Annotated[bool, Parameter(name=["-i", "--interactive"])] = False,
    name: str | None = None,
    env: EnvOption = None,
    workdir: WorkdirOption = None,
    user: UserOption = None,
    hostname: Annotated[str | None, Parameter(name=["-h", "--hostname"])] = None,
    entrypoint: str | None = None,
    runtime: str = "runc",
    storage_driver: str | None = None,
    pull: Literal["missing", "always", "never"] = "missing",
    platform: str | None = None,
    stop_timeout: float = 10.0,
    publish: Annotated[list[str] | None, Parameter(name=["-p", "--publish"], consume_multiple=False)] = None,
    network: str = "auto",
    no_network: bool = False,
    elevated: bool = False,
    host_loopback: bool = False,
    mtu: int | None = None,
    dns: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
    dns_search: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
    dns_option: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
    add_host: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
    restart: str = "no",
    restart_delay: float = 0.1,
    restart_max_delay: float = 10.0,
    restart_intensity: int = 5,
    restart_period: float = 10.0,
    health_cmd: str | None = None,
    health_interval: str = "30s",
    health_timeout: str = "30s",
    health_retries: int = 3,
    health_start_period: str = "0s",
    health_on_failure: Literal["none", "kill", "restart"] = "none",
) -> int:
    """Run a command in a new container.

    Parameters
    ----------
    image: str
        Image name, id or id prefix.
    command: str
        The command and its arguments (default: the image's).
    rm: bool
        Remove the container when it exits.
    detach: bool
        Run in the background and print the container id.
    interactive: bool
        Pass standard input to the container.
    name: str | None
        Name the container (default: its short id).
    env: list[str] | None
        Set an environment variable, KEY=VALUE (repeatable).
    workdir: str | None
        Working directory inside the container.
    user: str | None
        User (name or uid[:gid]) to run as inside the container.
    hostname: str | None
        Container hostname (default: its name).
    entrypoint: str | None
        Replace the image's entrypoint.
    runtime: str
        OCI runtime: runc, crun or a path.
    storage_driver: str | None
        overlay, fuse-overlayfs or copy (default: the first that works here; see carrier info).
    pull: str
        Pull the image: missing (when it is not stored), always, or never.
    platform: str | None
        The platform to pull, os/arch[/variant] (default: the host's).
    stop_timeout: float
        Seconds between SIGTERM and SIGKILL on stop.
    publish: list[str] | None
        Publish a port: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp], ranges allowed (repeatable).
    network: str
        auto (pasta, else slirp4netns), pasta, slirp4netns, none (loopback only) or host.
    no_network: bool
        Loopback only, no helper (the same as --network none).
    elevated: bool
        Share the host's network namespace (needs root; the same as --network host).
    host_loopback: bool
        Let the container reach the host's loopback as host.containers.internal.
    mtu: int | None
        MTU of the container's interface (1280 to 65520; default: the helper's, 65520).
    dns: list[str] | None
        Nameserver for the container's resolv.conf (repeatable; replaces the host's).
    dns_search: list[str] | None
        Search domain (repeatable).
    dns_option: list[str] | None
        resolv.conf option (repeatable).
    add_host: list[str] | None
        Add NAME:IP to the container's /etc/hosts (repeatable).
    restart: str
        Restart policy: no, on-failure[:N], always or unless-stopped.
    restart_delay: float
        Seconds before the first restart; the delay doubles for each one after.
    restart_max_delay: float
        Cap on the delay between restarts.
    restart_intensity: int
        Give up after more than this many restarts within --restart-period seconds.
    restart_period: float
        The window for --restart-intensity.
    health_cmd: str | None
        Command (run with /bin/sh -c inside) whose exit status 0 means healthy.
    health_interval: str
        Time between checks (30s, 500ms, 1m30s).
    health_timeout: str
        Time one check may take.
    health_retries: int
        Consecutive failures that make the container unhealthy.
    health_start_period: str
        Failures during this time after the start do not count.
    health_on_failure: str
        When unhealthy: none (record it), kill (stop; the restart policy decides), restart.
    """
    if no_network and elevated:
        raise CarrierError("--no-network and --elevated contradict each other")
    mode = "none" if no_network else "host" if elevated else network
    return cc.run(
        image, list(command), detach=detach, interactive=interactive, name=name,
        env=env or [], workdir=workdir, user=user, hostname=hostname,
        entrypoint=[entrypoint] if entrypoint is not None else None, runtime=runtime,
        storage_driver=storage_driver, pull=pull, platform=platform,
        stop_timeout=stop_timeout, remove=rm, network=mode, ports=publish or [],
        host_loopback=host_loopback, mtu=mtu, dns=dns or [], dns_search=dns_search or [],
        dns_option=dns_option or [], add_host=add_host or [], restart=restart,
        restart_delay=restart_delay, restart_max_delay=restart_max_delay,
        restart_intensity=restart_intensity, restart_period=restart_period,
        health_cmd=health_cmd, health_interval=parse_duration(health_interval),
        health_timeout=parse_duration(health_timeout), health_retries=health_retries,
        health_start_period=parse_duration(health_start_period), health_on_failure=health_on_failure,
    )


@app.command
def ps(
    all: Annotated[bool, Parameter(name=["-a", "--all"])] = False,
    format: Literal["table", "json"] = "table",
) -> int:
    """List containers (running ones, or all with -a)."""
    return cc.ps(all_=all, fmt=format)


@app.command
def stop(
    *containers: str,
    time: Annotated[float | None, Parameter(name=["-t", "--time"])] = None,
) -> int:
    """Stop containers: SIGTERM, then SIGKILL after the timeout (-t seconds)."""
    return cc.stop(list(containers), time)


@app.command
def rm(
    *containers: str,
    force: Annotated[bool, Parameter(name=["-f", "--force"])] = False,
) -> int:
    """Remove containers (-f also kills running ones)."""
    return cc.rm(list(containers), force)


@app.command(name="exec")
def exec_(
    container: str,
    *command: str,
    interactive: Annotated[bool, Parameter(name=["-i", "--interactive"])] = False,
    tty: Annotated[bool, Parameter(name=["-t", "--tty"])] = False,
    env: EnvOption = None,
    workdir: WorkdirOption = None,
    user: UserOption = None,
) -> int:
    """Run a command in a running container.

    Parameters
    ----------
    container: str
        Container name, id or id prefix.
    command: str
        The command and its arguments.
    interactive: bool
        Pass standard input to the command.
    tty: bool
        Give the command a pseudo-terminal.
    env: list[str] | None
        Set an environment variable, KEY=VALUE (repeatable).
    workdir: str | None
        Working directory inside the container.
    user: str | None
        User (name or uid[:gid]) to run as.
    """
    if not command:
        raise CarrierError("exec needs a command: carrier exec CONTAINER COMMAND...")
    return cc.enter(container, list(command), interactive=interactive, terminal=tty,
                    env=env or [], workdir=workdir, user=user)


@app.command(name=["shell", "sh"])
def shell(
    container: str,
    *command: str,
    env: EnvOption = None,
    workdir: WorkdirOption = None,
    user: UserOption = None,
) -> int:
    """Work interactively in a running container (default: /bin/sh).

    A pseudo-terminal is used when standard input is a terminal.
    """
    return cc.enter(container, list(command) or ["/bin/sh"], interactive=True,
                    terminal=sys.stdin.isatty(), env=env or [], workdir=workdir, user=user,
                    session=True)


@app.command(name=["terminal", "t", "term"])
def terminal(
    container: str,
    *command: str,
    env: EnvOption = None,
    workdir: WorkdirOption = None,
    user: UserOption = None,
) -> int:
    """Open a real terminal in a running container (default: /bin/sh).

    Always a pseudo-terminal: raw mode locally, window size followed, Ctrl-C/D/Z passed in.
    """
    return cc.enter(container, list(command) or ["/bin/sh"], interactive=True, terminal=True,
                    env=env or [], workdir=workdir, user=user, session=True)


network_app = App(name="network", help="Container networking.")
app.command(network_app)


@network_app.command
def check() -> int:
    """Check this machine for rootless networking and say how to fix what is missing."""
    from ._doctor import check as run_check

    return run_check()


@app.command
def up(
    file: Path,
    detach: Annotated[bool, Parameter(name=["-d", "--detach"])] = False,
) -> int:
    """Start a supervision tree declared in a TOML file (see supervisors/); Ctrl-C stops it.

    Parameters
    ----------
    file: Path
        The tree's TOML file.
    detach: bool
        Run the tree in the background; stop it with carrier down FILE.
    """
    return cc.up(file, detach)


@app.command
def down(file: Path) -> int:
    """Stop a tree started with carrier up: its containers in reverse start order."""
    return cc.down(file)


@app.command
def logs(container: str) -> int:
    """Print the output of a detached container."""
    return cc.logs(container)


@app.command
def info(container: str | None = None, format: Literal["text", "json"] = "text") -> int:
    """Show everything Carrier knows about a container (JSON), or, with no container, about this
    machine: storage driver, runtime, network helper."""
    if container is None:
        from . import _imagecmds as ic

        return ic.system_info(format)
    return cc.info(container)


@app.command
def events(
    format: Literal["table", "json"] = "table",
    follow: Annotated[bool, Parameter(name=["-f", "--follow"])] = False,
) -> int:
    """Show lifecycle events from every supervisor of this Carrier root (-f: keep following)."""
    return cc.events(format, follow)


@app.command
def images(format: Literal["table", "json"] = "table") -> int:
    """List images: repository, tag, id, created and size."""
    from . import _imagecmds as ic

    return ic.images(format)


@app.command(name="import")
def import_(tarball: Path, reference: str) -> int:
    """Import a root filesystem tarball as image REFERENCE (NAME[:TAG])."""
    from . import _imagecmds as ic

    return ic.import_(tarball, reference)


@app.command
def pull(
    reference: str,
    platform: str | None = None,
    tls_verify: Annotated[bool | None, Parameter(negative="--no-tls-verify")] = None,
) -> int:
    """Pull an image from a registry (``alpine`` is docker.io/library/alpine:latest).

    Parameters
    ----------
    reference: str
        [HOST[:PORT]/]NAME[:TAG][@sha256:DIGEST].
    platform: str | None
        os/arch[/variant] to pick from a multi-platform image (default: the host's).
    tls_verify: bool | None
        Require HTTPS with a verified certificate (default: yes, except for registries on
        loopback). --tls-verify=false allows plain HTTP or unverified TLS for this registry.
    """
    from . import _imagecmds as ic

    return ic.pull(reference, platform, tls_verify)


@app.command
def load(
    input: Annotated[Path, Parameter(name=["-i", "--input"])],
    platform: str | None = None,
) -> int:
    """Load images from a `docker save` archive or an OCI image-layout archive.

    Parameters
    ----------
    input: Path
        The archive (tar, optionally compressed) or an OCI layout directory.
    platform: str | None
        os/arch[/variant] to pick from a multi-platform archive (default: the host's).
    """
    from . import _imagecmds as ic

    return ic.load(input, platform)


@app.command
def rmi(*images: str, force: Annotated[bool, Parameter(name=["-f", "--force"])] = False) -> int:
    """Remove images; one a container uses is refused unless -f (which only untags it)."""
    if not images:
        raise CarrierError("rmi needs at least one image")
    from . import _imagecmds as ic

    return ic.rmi(list(images), force)


@app.command
def login(
    registry: str,
    username: Annotated[str | None, Parameter(name=["-u", "--username"])] = None,
    password_stdin: bool = False,
    tls_verify: Annotated[bool | None, Parameter(negative="--no-tls-verify")] = None,
) -> int:
    """Log in to a registry: checks the credentials, then stores them (auth.json).

    Parameters
    ----------
    registry: str
        HOST[:PORT].
    username: str | None
        The user name (asked for when missing).
    password_stdin: bool
        Read the password from standard input.
    tls_verify: bool | None
        As for pull.
    """
    from . import _imagecmds as ic

    return ic.login(registry, username, password_stdin, tls_verify)


@app.command
def logout(registry: str) -> int:
    """Forget the stored credentials for a registry."""
    from . import _imagecmds as ic

    return ic.logout(registry)


system_app = App(name="system", help="Machine-wide commands: info and prune.")
app.command(system_app)


@system_app.command(name="info")
def system_info(format: Literal["text", "json"] = "text") -> int:
    """Storage driver, runtime and network helper on this machine."""
    from . import _imagecmds as ic

    return ic.system_info(format)


@system_app.command
def prune(force: Annotated[bool, Parameter(name=["-f", "--force"])] = False) -> int:
    """Remove stopped containers, dangling images and unused layers; report the space freed."""
    from . import _imagecmds as ic

    return ic.prune(force)


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
        names.update({long, "--no-" + long[2:]})
    return names


_RUN_FLAGS = _flag_names(run)
_FLAGS = {"run": _RUN_FLAGS, "exec": _flag_names(exec_)}
for _name in ("shell", "sh", "terminal", "t", "term"):
    _FLAGS[_name] = _flag_names(terminal)


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``carrier`` console script."""
    try:
        code = app.meta(list(sys.argv[1:] if argv is None else argv))
    except CarrierError as e:
        print(f"carrier: {e}", file=sys.stderr)
        return e.exit_code
    except CycloptsError as e:
        print(f"carrier: {str(e).strip().splitlines()[0] if str(e).strip() else 'invalid usage'}",
              file=sys.stderr)
        return 125
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `carrier ps | head`: the reader went away, as it may
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # a tool or file Carrier needs, missing or refused
        print(f"carrier: {e.strerror or e}{f': {e.filename}' if e.filename else ''}",
              file=sys.stderr)
        return 125
    return code if isinstance(code, int) else 0


def console() -> NoReturn:
    """The ``carrier`` console script: :func:`main`, then exit without the interpreter's
    teardown (30-60 ms of freeing modules on every command); the output is flushed first."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
