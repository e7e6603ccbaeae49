"""A named network's supervision group, started on demand by the first container that joins.

The network supervisor is a detached process (``python -m carrier._supervision._netgroup ROOT
NAME``, forked off with ``setsid -f`` as ``run -d`` detaches a container's supervisor) whose
members are the network holder (a user and network namespace holding the bridge) and the
helper (pasta or slirp4netns, none on an ``--internal`` network). The first member to end ends
the group; the holder then goes, and with it the network namespace, every veth, and so every
attached container's network (each container's group watches the holder's pidfd and ends with
reason ``network-exited``).

The group also ends when no container is left: each attached container's supervisor holds a
shared ``flock`` on ``members.lock`` while it is attached, and the network supervisor waits for
an exclusive one (in a thread that wakes it through a pipe), so a container supervisor that is
SIGKILLed counts as gone at once. Joining happens under ``networks/.lock``; a joiner that finds
the network supervisor ending waits for it to exit and starts a new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import select
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from .._network import _bridge, _netlink
from .._network._choice import choose
from .._network._dns import read_host_resolv_conf
from .._network._helper import RESOLV_CONF, HelperConfig, RunningHelper
from .._sandbox._enter import enter_argv
from .._sandbox._holder import Holder, start_holder
from .._state._networks import Member, NetworkRecord, Networks
from .._util import _process
from .._util._atomic import lock_fd, try_lock, write_json
from .._util._errors import CarrierError, RuntimeFailure
from .._util._inotify import IN_CLOSE_WRITE, IN_MODIFY, watch_directory
from .._util._logging import log
from .._util._root import Root

START_TIMEOUT = 30.0
JOIN_ATTEMPTS = 5


def _in_netns(holder_pid: int, *argv: str) -> list[str]:
    """A command line run in the network holder's user and network namespaces."""
    return [*enter_argv(holder_pid, userns=True, mount=False), "-n", *argv]


async def _configure(record: NetworkRecord, holder: Holder) -> None:
    """The bridge with the gateway address, forwarding, and (unless internal) MASQUERADE."""
    net = record.network
    await anyio.to_thread.run_sync(lambda: _netlink.loopback_up(holder.pid, join_user=True))
    await anyio.to_thread.run_sync(
        lambda: _bridge.make_bridge(holder.pid, record.gateway, net.prefixlen))
    if record.internal:
        return
    await _process.run(_in_netns(holder.pid, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"))
    await _process.run(_in_netns(holder.pid, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s",
                                 record.subnet, "!", "-o", _bridge.BRIDGE, "-j", "MASQUERADE"))


async def _block_host(holder: Holder, host_address: str) -> None:
    """Nobody on the bridge reaches the host's loopback (the helper's mapping) unless a member
    asked for it (:func:`allow_host_loopback`)."""
    await _process.run(_in_netns(holder.pid, "iptables", "-A", "FORWARD", "-d", host_address,
                                 "-j", "DROP"))


async def set_host_loopback(holder_pid: int, address: str, host_address: str, allow: bool) -> None:
    """Let the member at *address* reach the host's loopback, or make sure it cannot (a rule
    left by a killed member that had the same address is removed first)."""
    rule = ["FORWARD", "-s", f"{address}/32", "-d", host_address, "-j", "ACCEPT"]
    for _ in range(8):  # bounded: each round removes one copy
        code, _out, _err = await _process.run(_in_netns(holder_pid, "iptables", "-D", *rule),
                                              check=False)
        if code != 0:
            break
    if allow:
        await _process.run(_in_netns(holder_pid, "iptables", "-I", *rule))


def _members_empty_waiter(path: Path) -> tuple[int, threading.Thread]:
    """A daemon thread that takes ``members.lock`` exclusively (so: no container attached) and
    then writes to a pipe; returns the pipe's read end. The lock stays held until exit."""
    r, w = os.pipe()

    def wait() -> None:
        fd = lock_fd(path)  # noqa: F841 - held until the process exits
        os.write(w, b"x")

    t = threading.Thread(target=wait, daemon=True, name="members-lock")
    t.start()
    return r, t


async def serve(root: Root, name: str, status_fd: int) -> None:
    """The network supervisor: set up, report on *status_fd*, run until a member ends or the
    last container leaves, then tear down."""
    nets = Networks(root)
    d = nets.dir(name)
    sup_lock = try_lock(d / "supervisor.lock")
    status = os.fdopen(status_fd, "wb")
    if sup_lock is None:
        status.write(b"another network supervisor runs")
        status.close()
        return
    # Kept until the next supervisor overwrites it: a joiner that finds this one ending waits
    # for this very process to exit (its run.json and locks go a moment before it does).
    _process.write_pid_file(d / "supervisor.pid", os.getpid())
    record = nets.get(name)
    holder: Holder | None = None
    running: RunningHelper | None = None
    try:
        holder = await _start_network_holder(nets, name)
        state: dict[str, Any] = {
            "supervisor_pid": os.getpid(), "supervisor_start": _process.start_time(os.getpid()),
            "holder_pid": holder.pid, "holder_start": _process.start_time(holder.pid),
            "helper": None, "helper_pid": None, "forwarder": None, "host_address": None,
        }
        write_json(d / "run.json", state)
        await _configure(record, holder)
        if not record.internal:
            helper = choose(record.options.get("helper", "auto"))
            assert helper is not None
            fwd = helper.forwarder(read_host_resolv_conf(RESOLV_CONF))
            config = HelperConfig(host_loopback=True, dns_forward=fwd.address if fwd else None,
                                  log=d / "network.log", pid_file=d / "network.pid")
            running = await helper.start(holder, config)
            assert running.host_address is not None
            await _block_host(holder, running.host_address)
            state.update(helper=helper.name, helper_pid=running.child.pid,
                         forwarder=fwd.address if fwd else None, host_address=running.host_address,
                         uplink_mtu=running.state.mtu)
            write_json(d / "run.json", state)
        log.info("network.ready", network=name, holder=holder.pid)
        status.write(b"started")
        status.close()
        await _run_members(d, holder, running)
    except BaseException as e:
        if not status.closed:
            status.write(str(e).encode() or repr(e).encode())
            status.close()
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await _teardown(nets, name, holder, running)
            os.close(sup_lock)


def _live_holders(nets: Networks, name: str) -> list[tuple[int, int]]:
    """The other networks' live holders: (PID, inode of its user namespace)."""
    found = []
    for other in nets.names():
        run = nets.run_state(other) if other != name else None
        if run is None:
            continue
        pid = run.get("holder_pid")
        if not isinstance(pid, int) or not _process.same_process(pid, run.get("holder_start")):
            continue
        with contextlib.suppress(OSError):
            found.append((pid, os.stat(f"/proc/{pid}/ns/user").st_ino))
    return found


async def _start_network_holder(nets: Networks, name: str) -> Holder:
    """The network holder, inside the user namespace of another live network's holder when
    there is one, else in a new one: so all live networks, and every container on one, share
    one user namespace, and a running container may get a veth from a second network
    (``network connect``). The joiner that started this supervisor holds ``networks/.lock``,
    so no network starts or is torn down meanwhile; a holder that dies meanwhile is skipped."""
    for pid, userns in _live_holders(nets, name):
        try:
            holder = await start_holder(userns=True, netns=True, inside=pid)
        except RuntimeFailure:  # it ended meanwhile: the next one
            continue
        try:
            if os.stat(f"/proc/{holder.pid}/ns/user").st_ino == userns:  # not a reused PID's
                return holder
        except OSError:
            pass
        await holder.stop()
    return await start_holder(userns=True, netns=True)


async def _run_members(d: Path, holder: Holder, running: RunningHelper | None) -> None:
    """Until the holder or the helper ends, or no container is left."""
    empty_r, _thread = _members_empty_waiter(d / "members.lock")
    async with anyio.create_task_group() as tg:

        async def ends(wait: Any, why: str) -> None:
            await wait()
            log.info("network.member-ended", why=why)
            tg.cancel_scope.cancel()

        async def empty() -> None:
            await anyio.wait_readable(empty_r)

        tg.start_soon(ends, holder.child.wait, "holder-exited")
        if running is not None:
            tg.start_soon(ends, running.child.wait, "helper-exited")
        tg.start_soon(ends, empty, "no-members")


async def _teardown(nets: Networks, name: str, holder: Holder | None,
                    running: RunningHelper | None) -> None:
    """Remove the run state (under the lock, so no joiner sees a dying network as running),
    then end the helper and the holder."""
    d = nets.dir(name)
    with nets.lock():
        (d / "run.json").unlink(missing_ok=True)
        nets.members(name)  # drops members whose supervisors were killed (their locks went)
    if running is not None:
        await running.stop()
    (d / "network.pid").unlink(missing_ok=True)
    if holder is not None:
        await holder.stop()


# -- the container side --


@dataclass
class Attachment:
    """A container's place on a named network, held for one run."""

    network: NetworkRecord
    run: dict[str, Any]
    member: Member
    members_fd: int  # shared lock on members.lock while attached
    holder_pidfd: int  # the network holder: its end ends the container's group

    @property
    def holder_pid(self) -> int:
        """The network holder's PID."""
        return int(self.run["holder_pid"])

    def close(self) -> None:
        """Release the membership lock and the pidfd (the network may end after this)."""
        for fd in (self.members_fd, self.holder_pidfd):
            with contextlib.suppress(OSError):
                os.close(fd)


def _start_supervisor(root: Root, name: str, d: Path) -> None:
    """Start the network supervisor detached; return once it reports it runs (blocking)."""
    r, w = os.pipe()
    with open(d / "supervisor.log", "ab") as logf:
        proc = subprocess.Popen(
            ["setsid", "-f", *_process.python_module("carrier._supervision._netgroup",
                                                      str(root.path), name, str(w))],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, pass_fds=[w], close_fds=True,
        )
    os.close(w)
    try:
        proc.wait(timeout=START_TIMEOUT)
        with os.fdopen(r, "rb") as status:
            r = -1
            text = status.read().decode(errors="replace").strip()
    finally:
        if r >= 0:
            os.close(r)
    if text != "started":
        raise CarrierError(f"network {name}: cannot start: {text or 'the network supervisor failed'}")


class _Ending(Exception):
    """The network's supervisor lives but its group is ending (its holder is gone)."""


def _requested(record: NetworkRecord, members: dict[str, Member], ip: str, cid: str = "") -> str:
    """*ip* when it is a container address of the network's subnet that no other member has."""
    try:
        address = ipaddress.IPv4Address(ip)
    except ValueError:
        raise CarrierError(f"invalid --ip {ip!r}: expected an IPv4 address") from None
    net = record.network
    if address not in net or address in (net.network_address, net.broadcast_address):
        raise CarrierError(f"invalid --ip {ip}: not a container address of network "
                           f"{record.name} ({record.subnet})")
    if str(address) == record.gateway:
        raise CarrierError(f"invalid --ip {ip}: the gateway of network {record.name}")
    for m in members.values():
        if m.address == str(address) and m.id != cid:
            raise CarrierError(f"invalid --ip {ip}: taken by {m.name} on network {record.name}")
    return str(address)


def check_address(root: Root, name: str, ip: str) -> None:
    """Refuse *ip* on network *name* up front (blocking): outside its subnet, or taken."""
    nets = Networks(root)
    with nets.lock():
        _requested(nets.get(name), nets.members(name), ip)


def _free_address(record: NetworkRecord, members: dict[str, Member]) -> str:
    used = {m.address for m in members.values()} | {record.gateway}
    for host in record.network.hosts():
        if str(host) not in used:
            return str(host)
    raise CarrierError(f"network {record.name}: no free address left in {record.subnet}")


def join(root: Root, name: str, cid: str, cname: str, aliases: list[str],
         host_loopback: bool, ip: str | None = None) -> Attachment:
    """Attach container *cid* to network *name* (blocking: call from a thread): start the
    network's group if needed, take an address, and register the container as a member."""
    nets = Networks(root)
    d = nets.dir(name)
    for _ in range(JOIN_ATTEMPTS):
        with nets.lock():
            record = nets.get(name)
            members_fd = os.open(d / "members.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(members_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return _attach(root, nets, record, members_fd, cid, cname, aliases, host_loopback,
                               ip)
            except (BlockingIOError, _Ending):  # the network's group is ending: wait, start anew
                os.close(members_fd)
            except BaseException:
                os.close(members_fd)
                raise
        _wait_gone(d / "supervisor.pid")
    raise CarrierError(f"network {name}: cannot join (its supervisor keeps ending)")


def remove_unused(root: Root, name: str, in_use: Callable[[], bool]) -> bool:
    """Remove network *name* when no container is attached and *in_use* says no record needs
    it (blocking): the down of a tree removes its default network, as Compose does. The
    network's group ends by itself once its last member has left; its exit is awaited first,
    outside the lock its teardown takes."""
    nets = Networks(root)
    if not nets.exists(name):
        return False
    with nets.lock():
        if nets.members(name) or in_use():
            return False
    _wait_gone(nets.dir(name) / "supervisor.pid")
    with nets.lock():
        if nets.members(name) or nets.supervisor_alive(name) or in_use():
            return False
        nets.remove(name)
    return True


def _wait_gone(pid_file: Path) -> None:
    """Wait (bounded) until the network supervisor recorded in *pid_file* has exited."""
    recorded = _process.read_pid_file(pid_file)
    if recorded is None:
        return
    with contextlib.suppress(ProcessLookupError):
        fd = os.pidfd_open(recorded[0])
        try:
            if _process.same_process(*recorded):  # checked once the pidfd pins the PID
                poller = select.poll()  # not select: the fd may be above 1024 (a keeper)
                poller.register(fd, select.POLLIN)
                poller.poll(START_TIMEOUT * 1000)
        finally:
            os.close(fd)


def _attach(root: Root, nets: Networks, record: NetworkRecord, members_fd: int, cid: str,
            cname: str, aliases: list[str], host_loopback: bool, ip: str | None) -> Attachment:
    name = record.name
    d = nets.dir(name)
    if not nets.supervisor_alive(name):
        (d / "run.json").unlink(missing_ok=True)
        _process.kill_recorded(d / "network.pid")  # a killed supervisor's helper
        _start_supervisor(root, name, d)
    run = nets.run_state(name)
    if run is None or not _process.same_process(run["holder_pid"], run.get("holder_start")):
        raise _Ending
    pidfd = os.pidfd_open(run["holder_pid"])
    members = nets.members(name)
    members.pop(cid, None)
    address = _free_address(record, members) if ip is None else _requested(record, members, ip, cid)
    member = Member(id=cid, name=cname, address=address,
                    aliases=list(aliases), host_loopback=host_loopback)
    members[cid] = member
    nets.save_members(name, members)
    return Attachment(record, run, member, members_fd, pidfd)


def announce(root: Root, attachment: Attachment, hosts_file: Path, *, keep: bool) -> None:
    """Rewrite every member's hosts file, the container's own at *hosts_file* included
    (blocking): from now on all members resolve each other by name.

    Before the command starts, the own file is reached through the root filesystem as set up
    (*keep* false: that path is gone once the runtime has pivoted into it); once it runs,
    through ``/proc/<command>/root``, recorded (*keep*) for the rewrites of later joins and
    leaves.
    """
    nets = Networks(root)
    with nets.lock():
        members = nets.members(attachment.network.name)
        member = members.get(attachment.member.id)
        if member is None:  # cannot happen while its supervisor lives
            raise CarrierError(f"network {attachment.network.name}: membership lost")
        member.hosts_file = str(hosts_file)
        if keep:
            nets.save_members(attachment.network.name, members)
        rewrite_hosts(attachment.network.name, members)


def leave(root: Root, attachment: Attachment, *, forget: bool = False) -> dict[str, Member]:
    """Unregister the container and rewrite the other members' hosts files (blocking); with
    *forget* (``network disconnect`` of a running container), its own hosts file loses the
    network's section too, under the same lock: every file changes at once. Returns the
    members left."""
    nets = Networks(root)
    name = attachment.network.name
    try:
        with nets.lock():
            members = nets.members(name)
            gone = members.pop(attachment.member.id, None)
            nets.save_members(name, members)
            rewrite_hosts(name, members)
            if forget and gone is not None and gone.hosts_file:
                _rewrite_section(gone.hosts_file, name, None)
    finally:
        attachment.close()
    return members


def member_lines(members: dict[str, Member]) -> list[str]:
    """The /etc/hosts lines naming every member: address, name, aliases."""
    return [f"{m.address}\t{' '.join(dict.fromkeys([m.name, *m.aliases]))}"
            for m in sorted(members.values(), key=lambda m: ipaddress.IPv4Address(m.address))]


SECTION = "# carrier network members"
"""The first line of a network's section of a member's hosts file: ``SECTION: NAME``. A
container on several networks (``network connect``) has one section per network, each rewritten
on its own; the lines above the first section are the container's own."""


def _split_sections(text: str) -> tuple[str, dict[str, str]]:
    """A hosts file's own lines, and its networks' sections (name: lines) in their order."""
    head: list[str] = []
    sections: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines(keepends=True):
        if line.startswith(SECTION):
            current = line[len(SECTION):].strip().removeprefix(":").strip()
            sections[current] = ""
        elif current is None:
            head.append(line)
        else:
            sections[current] += line if line.endswith("\n") else line + "\n"
    own = "".join(head)
    return (own if not own or own.endswith("\n") else own + "\n"), sections


def with_section(text: str, network: str, lines: str | None) -> str:
    """*text* (a hosts file) with network *network*'s section set to *lines*, or removed (None);
    the other sections are kept as they are."""
    own, sections = _split_sections(text)
    sections.pop("", None)  # an older Carrier's one unnamed section
    if lines is None:
        sections.pop(network, None)
    else:
        sections[network] = lines
    return _join_sections(own, sections)


def _join_sections(own: str, sections: dict[str, str]) -> str:
    """A hosts file from its own lines and its networks' sections (the reverse of the split)."""
    return own + "".join(f"{SECTION}: {name}\n{body}" for name, body in sections.items())


HOSTS_MAX = 1 << 20  # a hosts file larger than this is left alone


def _open_hosts(path: str) -> int:
    """Open a member's ``.../etc/hosts`` for writing without following a symlink the container
    may have put at ``etc`` or ``hosts`` (through ``/proc/<pid>/root`` an absolute symlink would
    lead into *our* filesystem); a regular file only."""
    parent, name = os.path.split(path)
    base, etc = os.path.split(parent)
    flags = os.O_CLOEXEC | os.O_NOFOLLOW
    base_fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        etc_fd = os.open(etc, os.O_RDONLY | os.O_DIRECTORY | flags, dir_fd=base_fd)
    finally:
        os.close(base_fd)
    try:
        fd = os.open(name, os.O_RDWR | os.O_NONBLOCK | flags, dir_fd=etc_fd)
    finally:
        os.close(etc_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path}: not a regular file")
    return fd


def read_hosts(pid: int) -> str | None:
    """A running member's hosts file as it is now (its members' lines included), read without
    following the container's symlinks; None when it cannot be read."""
    try:
        with os.fdopen(_open_hosts(f"/proc/{pid}/root/etc/hosts"), encoding="utf-8",
                       errors="replace") as f:
            text = f.read(HOSTS_MAX + 1)
    except OSError:
        return None
    return text if len(text) <= HOSTS_MAX else None


def watch_hosts(pid: int) -> int | None:
    """A non-blocking inotify descriptor that becomes readable when the hosts file of the
    running container *pid* is rewritten (a ``container:`` joiner follows its owner's); None
    when it cannot be watched. Set it before reading the file, so that no change is missed."""
    return watch_directory(Path(f"/proc/{pid}/root/etc/hosts"), IN_MODIFY | IN_CLOSE_WRITE,
                           blocking=False)


def joiner_hosts(owner: str, own: str) -> str:
    """A ``container:`` joiner's hosts file: its owner's, with the joiner's own line *own* put
    above the network members' sections (which :func:`rewrite_hosts` replaces)."""
    head, sections = _split_sections(owner)
    return _join_sections(f"{head}{own}\n", sections)


def write_hosts(pid: int, text: str) -> None:
    """Rewrite the hosts file of the running container *pid* in place (same inode), without
    following the container's symlinks; nothing when it cannot be opened."""
    with contextlib.suppress(OSError), \
            os.fdopen(_open_hosts(f"/proc/{pid}/root/etc/hosts"), "r+", encoding="utf-8") as f:
        f.write(text)
        f.truncate()


def rewrite_hosts(network: str, members: dict[str, Member]) -> None:
    """Rewrite the section of *network* in each member's hosts file *in place* (same inode: a
    container sees the change whether the file is bind-mounted or its own), keeping its own
    lines and the sections of its other networks."""
    lines = "".join(f"{ln}\n" for ln in member_lines(members))
    for m in members.values():
        if m.hosts_file:
            _rewrite_section(m.hosts_file, network, lines)


def _rewrite_section(path: str, network: str, lines: str | None) -> None:
    """Set (or with None remove) *network*'s section of the hosts file at *path*, in place."""
    with contextlib.suppress(OSError), \
            os.fdopen(_open_hosts(path), "r+", encoding="utf-8", errors="replace") as f:
        text = f.read(HOSTS_MAX + 1)
        if len(text) > HOSTS_MAX:
            return
        f.seek(0)
        f.write(with_section(text, network, lines))
        f.truncate()


def refresh(root: Root, name: str) -> None:
    """Rewrite every member's hosts file from the current membership (blocking)."""
    nets = Networks(root)
    with nets.lock():
        rewrite_hosts(name, nets.members(name))


def reconcile_networks(root: Root) -> None:
    """The run state of every network whose supervisor died without cleaning up (SIGKILL): its
    helper, if still alive, is ended and its files removed (its holder ended with it)."""
    nets = Networks(root)
    for name in nets.names():
        d = nets.dir(name)
        if not (d / "run.json").exists() or nets.supervisor_alive(name):
            continue
        with nets.lock():
            if nets.supervisor_alive(name):
                continue
            _process.kill_recorded(d / "network.pid")
            (d / "run.json").unlink(missing_ok=True)
            nets.members(name)  # drops the members whose supervisors are gone


def _main(argv: list[str]) -> int:
    from .._runtime._reaper import name_network_supervisor

    name_network_supervisor()  # so that the subreaper it is orphaned to reaps it
    root, name, status_fd = Root.open(argv[0]), argv[1], int(argv[2])
    anyio.run(serve, root, name, status_fd)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
