"""Running a declared supervision tree (``carrier up``) from one process.

Containers start in dependency order, each once its dependencies meet their condition
(started, healthy, or a port listening). Groups apply OTP's strategies: ``one_for_one``
leaves each member to its own restart policy; in ``one_for_all`` and ``rest_for_one`` the
members are permanent (restarted always) and the end of one run restarts every sibling, or the
siblings started after it, within the group's intensity limit, beyond which the tree gives up.
Stopping stops the containers in parallel, each after those that depend on it.

A tree can come up again after ``down`` or after its supervisor died: as Compose does, ``up``
recreates the tree's containers (those labelled with the tree's name whose supervisor is gone).
One supervisor per tree: it holds ``trees/<name>.lock`` for its whole life.
"""

from __future__ import annotations

import collections
import contextlib
import os
import subprocess
import time
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskStatus

from .._images._ensure import ensure_image
from .._state._networks import Networks
from .._state._records import Containers
from .._state._schema import Damaged
from .._util import _process
from .._util._atomic import try_lock, write_json
from .._util._errors import CarrierError, ConflictError, NotFoundError
from .._util._root import Root
from ._control import remove
from ._create import build_spec, create
from ._group import supervise
from ._handle import Container, Outcome, Reason, Stdio
from ._netgroup import remove_unused
from ._ready import Condition, healthy, port
from ._treespec import GroupDecl, Tree

TREE_LABEL = "carrier.tree"
"""The label naming the tree that created a container."""


def _condition(text: str) -> Condition | None:
    if text == "started":
        return None
    if text == "healthy":
        return healthy()
    return port(int(text.split(":", 1)[1]))


class _Run:
    """One running tree."""

    def __init__(self, root: Root, tree: Tree, stop: anyio.Event) -> None:
        self.root = root
        self.tree = tree
        self.handles: dict[str, Container] = {}
        self.order: list[str] = []
        self.stop = stop  # set by the caller (Ctrl-C, carrier down) or when a group gives up
        self.gave_up: str | None = None
        self.group_of = {m: g for g in tree.groups for m in g.members}
        self.recent: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self.running: dict[str, anyio.Event] = {}  # set while a member's run runs
        self.runs: dict[str, int] = collections.Counter()  # a member's runs started so far
        self.joined: dict[str, tuple[str, int]] = {}  # a joiner's owner and the run it joined

    def on_run_end(self, group: GroupDecl, member: str, _: Container, outcome: Outcome) -> None:
        """A member's run ended: restart its siblings as the group's strategy says."""
        if self.stop.is_set() or outcome.reason in (Reason.STOP_REQUESTED,
                                                     Reason.RESTART_REQUESTED):
            return
        now = time.monotonic()
        recent = self.recent[group.name]
        while recent and now - recent[0] > group.period:
            recent.popleft()
        if len(recent) >= group.intensity:
            self.gave_up = (f"group {group.name} gave up: more than {group.intensity} "
                            f"restarts within {group.period:g} s")
            self.stop.set()
            return
        recent.append(now)
        members = [m for m in group.members if m in self.handles]
        if group.strategy == "one_for_all":
            siblings = [m for m in members if m != member]
        else:  # rest_for_one: those started after it
            siblings = [m for m in members if self.order.index(m) > self.order.index(member)]
        for sibling in siblings:
            self.handles[sibling].restart()

    def run_started(self, name: str) -> None:
        """A member's run started (each run): its joiners may join it."""
        self.runs[name] += 1
        self.running[name].set()

    def run_ended(self, name: str, outcome: Outcome) -> None:
        """A member's run ended: those joined to its network wait for its next run. A joiner
        that saw its owner's network end (before the owner's own end is handled) marks that
        run of the owner's as over at once, so that it cannot rejoin the dead one."""
        if self.running[name].is_set():
            self.running[name] = anyio.Event()
        if name in self.joined and outcome.reason is Reason.NETWORK_EXITED:
            owner, run = self.joined[name]
            if self.runs[owner] == run and self.running[owner].is_set():
                self.running[owner] = anyio.Event()

    async def owner_runs(self, joiner: str, owner: str) -> None:
        """Until *owner* runs: a ``container:`` joiner's restart waits for it, so that the
        owner (a Pod's infra container) comes back first and the joiner joins its new run."""
        await self.running[owner].wait()
        self.joined[joiner] = (owner, self.runs[owner])

    def owner(self, options: dict[str, Any]) -> str | None:
        """The member whose network *options* join (``container:NAME``), if it is one."""
        network = str(options.get("network", ""))
        if not network.startswith("container:"):
            return None
        target = network.split(":", 1)[1]
        return next((d.name for d in self.tree.containers
                     if self.tree.container_name(d.name) == target and d.name in self.running),
                    None)

    def options(self, name: str, options: dict[str, Any]) -> dict[str, Any]:
        options = {**options, "labels": {TREE_LABEL: self.tree.name}}
        if "network" not in options:  # the tree's own network, where it is called by its name
            options.update(network=self.tree.network,
                           network_aliases=[name, *options.get("network_aliases", [])])
        group = self.group_of.get(name)
        if group is not None and group.strategy != "one_for_one":
            options = {**options, "restart": "always", "restart_intensity": group.intensity + 1,
                       "restart_period": group.period}
        return options

    def ensure_network(self) -> None:
        """Create the tree's network (a record; it runs while containers use it) if a container
        uses it and it does not exist yet; it is kept for the next ``up``."""
        if all("network" in d.options for d in self.tree.containers):
            return
        networks = Networks(self.root)
        if not networks.exists(self.tree.network):
            with contextlib.suppress(CarrierError):  # a concurrent up made it: fine
                networks.create(self.tree.network, labels={TREE_LABEL: self.tree.name})
            networks.get(self.tree.network)

    async def remove_previous(self) -> None:
        """Remove the containers an earlier run of this tree left (after ``down`` or a crash),
        so that they can be recreated; a name held by anything else is a conflict."""
        containers = Containers(self.root)
        for decl in self.tree.containers:
            name = self.tree.container_name(decl.name)
            try:
                cid = containers.resolve(name)  # tree names hold a "-": never an id prefix
                labels = containers.load(cid).spec.labels
            except NotFoundError:
                continue
            except Damaged:
                labels = {}
            where = f"{self.tree.path}: containers.{decl.name}"
            if containers.supervisor_alive(cid):
                raise ConflictError(f"{where}: the container name {name!r} is in use by a "
                                    "running container")
            if labels.get(TREE_LABEL) != self.tree.name:
                raise ConflictError(f"{where}: the container name {name!r} is in use by a "
                                    "container this tree did not create (carrier rm it)")
            await remove(self.root, cid)

    async def completed(self, name: str, timeout: float = 300) -> Outcome | None:
        """How *name* ended for good, or None once a stop is asked first; bounded as the other
        conditions are."""
        ended: list[Outcome] = []
        with anyio.move_on_after(timeout) as scope:
            async with anyio.create_task_group() as tg:

                async def wait() -> None:
                    ended.append(await self.handles[name].wait())
                    tg.cancel_scope.cancel()

                async def stopped() -> None:
                    await self.stop.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(wait)
                tg.start_soon(stopped)
        if scope.cancelled_caught:
            raise CarrierError(f"{self.tree.path}: containers.{name}: did not complete within "
                               f"{timeout:g} s")
        return ended[0] if ended else None

    async def run(self, *, task_status: TaskStatus[dict[str, Container]]) -> str | None:
        self.ensure_network()
        for decl in self.tree.containers:  # nothing starts unless every container is valid
            try:
                await ensure_image(self.root, decl.image, decl.pull)
                build_spec(self.root, decl.image, decl.command, **self.options(decl.name, decl.options))
            except CarrierError as e:
                raise CarrierError(f"{self.tree.path}: containers.{decl.name}: {e}") from None
        await self.remove_previous()
        async with anyio.create_task_group() as tg:
            try:
                for decl in self.tree.containers:
                    for dep, cond in decl.depends_on.items():
                        if cond == "completed":  # kube play's init containers: run to the end
                            outcome = await self.completed(dep)
                            if outcome is None:
                                raise CarrierError(f"tree {self.tree.name}: stopped while "
                                                   f"waiting for {dep} to complete")
                            if outcome.exit_code != 0:
                                raise CarrierError(f"{self.tree.path}: containers.{dep}: ended "
                                                   f"with exit code {outcome.exit_code}")
                            continue
                        condition = _condition(cond)
                        if condition is not None:
                            await self.handles[dep].wait_for(condition, timeout=300)
                    record, lock = create(
                        self.root, decl.image, decl.command,
                        name=self.tree.container_name(decl.name),
                        **self.options(decl.name, decl.options),
                    )
                    quiet = Stdio(subprocess.DEVNULL, subprocess.DEVNULL, subprocess.DEVNULL)
                    self.running[decl.name] = anyio.Event()
                    mark = partial(lambda n, _: self.run_started(n), decl.name)
                    owner = self.owner(decl.options)
                    if owner is not None:
                        self.joined[decl.name] = (owner, self.runs[owner])
                    handle: Container = await tg.start(  # its output goes to its log
                        partial(supervise, on_running=mark), self.root, record, lock, quiet
                    )
                    handle.on_run_end(partial(lambda n, _, o: self.run_ended(n, o), decl.name))
                    if owner is not None:
                        handle.gate_joins(partial(self.owner_runs, decl.name, owner))
                    self.handles[decl.name] = handle
                    self.order.append(decl.name)
                    group = self.group_of.get(decl.name)
                    if group is not None and group.strategy != "one_for_one":
                        handle.on_run_end(partial(self.on_run_end, group, decl.name))
                task_status.started(self.handles)
                async with anyio.create_task_group() as waiters:

                    async def all_ended() -> None:
                        for h in self.handles.values():
                            await h.wait()
                        waiters.cancel_scope.cancel()

                    async def stop_asked() -> None:
                        await self.stop.wait()
                        waiters.cancel_scope.cancel()

                    waiters.start_soon(all_ended)
                    waiters.start_soon(stop_asked)
            finally:
                with anyio.CancelScope(shield=True):
                    await self.stop_all()
        return self.gave_up

    async def stop_all(self) -> None:
        """Stop the started containers all at once, except that a container waits until those
        that depend on it have stopped (reverse dependency order)."""
        stopped = {name: anyio.Event() for name in self.order}
        dependents = {name: [d.name for d in self.tree.containers
                             if name in d.depends_on and d.name in stopped] for name in self.order}

        async def stop(name: str) -> None:
            for dependent in dependents[name]:
                await stopped[dependent].wait()
            self.handles[name].stop()
            await self.handles[name].wait()
            stopped[name].set()

        async with anyio.create_task_group() as tg:
            for name in self.order:
                tg.start_soon(stop, name)


def state_file(root: Root, name: str) -> Any:
    """Where a running tree records its supervisor (for ``carrier down``)."""
    trees = root.path / "trees"
    trees.mkdir(mode=0o700, exist_ok=True)
    return trees / f"{name}.json"


async def up(root: Root, tree: Tree, stop: anyio.Event, *,
             task_status: TaskStatus[dict[str, Container]] = anyio.TASK_STATUS_IGNORED) -> str | None:
    """Run *tree* until *stop* is set or every container has ended for good.

    Returns why a group gave up, or None. **Cancellation:** every container is stopped in
    reverse start order and cleaned before it propagates.
    """
    state = state_file(root, tree.name)
    lock = try_lock(state.with_suffix(".lock"))
    if lock is None:
        raise CarrierError(f"tree {tree.name} is already up")
    try:  # a file left by a supervisor that died is stale: the lock says so
        write_json(state, {"pid": os.getpid(), "start": _process.start_time(os.getpid()),
                           "file": str(tree.path)})
        try:
            return await _Run(root, tree, stop).run(task_status=task_status)
        finally:
            state.unlink(missing_ok=True)
    finally:
        os.close(lock)


def remove_tree_network(root: Root, tree: str, network: str) -> bool:
    """Remove the network *tree* made (``<tree>_default``), as Compose's down does, once its
    supervisor is gone (blocking) - unless the tree did not make it (a user's own network of
    that name) or a container outside the tree uses it. Whether it was removed."""
    nets = Networks(root)
    try:
        if nets.get(network).labels.get(TREE_LABEL) != tree:
            return False
    except CarrierError:  # none of that name
        return False

    def in_use() -> bool:
        return any(r.spec.network == network and r.spec.labels.get(TREE_LABEL) != tree
                   for r in Containers(root).all())

    return remove_unused(root, network, in_use)

