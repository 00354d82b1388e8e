"""Pure scheduling policy: which dynos an app should have, and which node gets a new one.

`plan_app` compares the formation with the dyno rows and reported states and says what to start
and what to stop; `place` picks a node for one dyno, and `Placer` makes the same choices for many
dynos in a row without looking at every node for each one. The one rule for replacing dynos (new
release, restart): in each slot (`web.1`) the newest dyno on the current release is the target,
and older ones are stopped only once the target is up, so a release whose dynos crash at boot
never takes the running ones down.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from waka.v1.common_pb2 import DynoState


@dataclass(frozen=True)
class DynoRow:
    id: str
    type: str
    idx: int
    release: int
    node_id: str | None
    seq: int
    size: str


@dataclass
class Plan:
    # Slots (type, index) that need a new dyno on the current release.
    create: list[tuple[str, int]] = field(default_factory=list)
    stop: list[str] = field(default_factory=list)


def plan_app(
    formation: Mapping[str, int],
    process_types: Collection[str],
    release: int,
    rows: Sequence[DynoRow],
    state_of: Callable[[str], int | None],
    *,
    preboot: bool = True,
    stopping: Collection[tuple[str, int]] = (),
) -> Plan:
    """What to change so the app runs `formation` on `release`; `rows` are its running dynos.

    Without preboot (apps that must never run two copies) a slot's old dyno is stopped first,
    and its replacement is created only once nothing of the slot runs any more (`stopping` are
    slots whose stopped dynos have not finished stopping yet).
    """
    plan = Plan()
    slots: dict[tuple[str, int], list[DynoRow]] = {}
    for row in rows:
        wanted = release > 0 and row.type in process_types and row.idx <= formation.get(row.type, 0)
        if wanted:
            slots.setdefault((row.type, row.idx), []).append(row)
        else:
            plan.stop.append(row.id)

    for process_type in sorted(formation):
        if release <= 0 or process_type not in process_types:
            continue
        for idx in range(1, formation[process_type] + 1):
            slot_rows = sorted(slots.get((process_type, idx), []), key=lambda r: r.seq)
            current = [r for r in slot_rows if r.release == release]
            if not preboot:
                old = [r for r in slot_rows if r is not (current[-1] if current else None)]
                plan.stop.extend(r.id for r in old)
                if not current and not old and (process_type, idx) not in stopping:
                    plan.create.append((process_type, idx))
                continue
            if not current:
                plan.create.append((process_type, idx))
                continue
            target = current[-1]
            if state_of(target.id) == DynoState.DYNO_STATE_UP:
                plan.stop.extend(r.id for r in slot_rows if r is not target)
    return plan


@dataclass(frozen=True)
class NodeLoad:
    node_id: str
    name: str
    capacity_mb: int
    committed_mb: int
    # Dynos of the same app and process type already on this node.
    same_group: int
    has_slug: bool
    schedulable: bool = True


@dataclass(frozen=True)
class Placement:
    node_id: str | None
    reason: str = ""


def place(nodes: Sequence[NodeLoad], need_mb: int, *, overcommit: float = 4.0) -> Placement:
    """Spread first, then the least committed memory against capacity, then a node with the slug.

    Quotas are soft limits (a dyno over its quota is warned, killed only at twice the quota), and a
    homelab's apps mostly idle far below theirs, so memory may be committed up to `overcommit`
    times a node's capacity.
    """
    if not nodes:
        return Placement(None, "no node is connected")
    candidates = [n for n in nodes if n.schedulable]
    if not candidates:
        return Placement(None, "every node is cordoned or draining")
    fitting = [n for n in candidates if n.committed_mb + need_mb <= n.capacity_mb * overcommit]
    if not fitting:
        return Placement(
            None, f"no node has {need_mb} MB of memory left (committed memory is at its limit)"
        )
    best = min(
        fitting,
        key=lambda n: (
            n.same_group,
            (n.committed_mb + need_mb) / max(n.capacity_mb, 1),
            not n.has_slug,
            n.name,
        ),
    )
    return Placement(best.node_id)


@dataclass(frozen=True)
class NodeInfo:
    """A node as one placement pass sees it: NodeLoad without the per-group count."""

    node_id: str
    name: str
    capacity_mb: int
    committed_mb: int
    has_slug: bool
    schedulable: bool = True


class Placer:
    """`place()` for many dynos in one pass, each choice counted before the next one is made.

    Calling `place()` per dyno builds a NodeLoad for every node every time: 10,000 dynos on 200
    nodes made two million of them. Here each (group, need) keeps a heap of the nodes under
    `place()`'s own key. A placement only raises the chosen node's key (more committed memory, one
    more dyno of the group), so stale heap entries are re-keyed when they surface (lazy update),
    and a node that does not fit a size is dropped from that size's heap for good, since
    commitments never shrink within a pass. Ties fall to the earlier node, as with `min()`, so the
    choices are exactly those of `place()` on the same loads.
    """

    def __init__(
        self,
        nodes: Sequence[NodeInfo],
        same_group: Mapping[tuple[str, str], int] | None = None,
        *,
        overcommit: float = 4.0,
    ) -> None:
        self._nodes = list(nodes)
        self._overcommit = overcommit
        self._committed = [n.committed_mb for n in self._nodes]
        # (node index, group) -> dynos of that group on the node; group = the app's process type.
        self._groups: dict[tuple[int, str], int] = {}
        index = {n.node_id: i for i, n in enumerate(self._nodes)}
        for (node_id, group), count in (same_group or {}).items():
            i = index.get(node_id)
            if i is not None:
                self._groups[(i, group)] = self._groups.get((i, group), 0) + count
        # Bumped whenever a node's key may have changed: heap entries of older versions are stale.
        self._version = [0] * len(self._nodes)
        self._heaps: dict[tuple[str, int], list[tuple]] = {}
        self._schedulable = [i for i, n in enumerate(self._nodes) if n.schedulable]

    def _entry(self, i: int, group: str, need_mb: int) -> tuple:
        node = self._nodes[i]
        # Exactly place()'s key (same float expression), then the node's position for ties.
        return (
            self._groups.get((i, group), 0),
            (self._committed[i] + need_mb) / max(node.capacity_mb, 1),
            not node.has_slug,
            node.name,
            i,
            self._version[i],
        )

    def _fits(self, i: int, need_mb: int) -> bool:
        return self._committed[i] + need_mb <= self._nodes[i].capacity_mb * self._overcommit

    def place(self, group: str, need_mb: int) -> Placement:
        """The node place() would choose for one more dyno of `group`; the choice is counted."""
        if not self._nodes:
            return Placement(None, "no node is connected")
        if not self._schedulable:
            return Placement(None, "every node is cordoned or draining")
        heap = self._heaps.get((group, need_mb))
        if heap is None:
            heap = [self._entry(i, group, need_mb) for i in self._schedulable]
            heapq.heapify(heap)
            self._heaps[(group, need_mb)] = heap
        while heap:
            entry = heap[0]
            i, version = entry[4], entry[5]
            if not self._fits(i, need_mb):
                heapq.heappop(heap)
                continue
            if version != self._version[i]:
                heapq.heapreplace(heap, self._entry(i, group, need_mb))
                continue
            self._committed[i] += need_mb
            self._groups[(i, group)] = self._groups.get((i, group), 0) + 1
            self._version[i] += 1
            heapq.heapreplace(heap, self._entry(i, group, need_mb))
            return Placement(self._nodes[i].node_id)
        return Placement(
            None, f"no node has {need_mb} MB of memory left (committed memory is at its limit)"
        )
