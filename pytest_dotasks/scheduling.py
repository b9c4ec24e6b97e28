"""xdist's loadgroup scheduler, made safe for steps: chains in file order, and no hang after a crash.

Under ``-n N`` the plugin hands a plan out by chains (``plugin._group_by_chain``) through
xdist's ``LoadGroupScheduling``. pytest-xdist 3.8 has two known hangs when a worker crashes
under it (pytest-dev/pytest-xdist#1323, #1327; fixed on its main branch, not released):
the crashed worker's finished units go back on the queue as empty ones, and a replacement
worker given a single step waits for a second one forever. A step that kills its worker
(an out-of-memory agent, pytest-timeout's thread method) would hang the run. This subclass
differs in three places only:

- the step a worker died on is not run again: xdist has reported it failed, and running an
  expensive step a second time (and reporting it twice) is worse than going on;
- the crashed worker's unfinished units are kept for its replacement, which takes them over
  whole and first, as if it were the worker that died: handed to a live worker instead, they
  would queue behind a step there that may be waiting for one of them (run/board.py), and
  that wait could only end as "stuck". Waits between workers rely on every worker's queue
  being in file order, and the replacement's queue is the dead worker's, minus what it did;
- a worker always holds two steps, or is told to finish as soon as nothing is left to hand
  out, so it never holds its last step while waiting for one more.
"""

from __future__ import annotations

from typing import Any

from xdist.scheduler.loadgroup import LoadGroupScheduling  # type: ignore[import-untyped, unused-ignore]


class ChainScheduling(LoadGroupScheduling):  # type: ignore[misc, unused-ignore]
    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        self._orphans: list[list[str]] = []  # each crashed worker's unfinished scopes, for its replacement

    def remove_node(self, node: Any) -> str | None:
        workload = self.assigned_work.pop(node)
        unfinished = {scope: unit for scope, unit in workload.items() if not all(unit.values())}
        if not unfinished:
            return None
        first = next(iter(unfinished.values()))
        crashitem = next(nodeid for nodeid, done in first.items() if not done)
        first[crashitem] = True  # reported failed by xdist: not run again
        again = [(scope, unit) for scope, unit in unfinished.items() if not all(unit.values())]
        if again:
            self.workqueue.update(again)  # counted as work left (tests_finished), handed out by _reschedule
            self._orphans.append([scope for scope, _ in again])
        for other in self.assigned_work:
            self._reschedule(other)
        return crashitem

    def _reschedule(self, node: Any) -> None:
        if node.shutting_down or node not in self.registered_collections:
            return  # a replacement still collecting: it is scheduled once it has
        if self._orphans and not self.assigned_work[node]:
            for scope in self._orphans.pop(0):  # a replacement: the dead worker's queue, in its order
                self._assign_scope(node, scope)
        # A worker runs a step only once it knows the next one (or that there is none): it
        # always holds two, as at the start, or is told to finish.
        if self._pending_of(self.assigned_work[node]) <= 2:
            nxt = self._next_scope()
            while nxt is not None:
                self._assign_scope(node, nxt)
                nxt = self._next_scope() if self._pending_of(self.assigned_work[node]) < 2 else None
        if self._next_scope() is None:
            node.shutdown()  # nothing more to hand out to it: run what it has, then stop

    def _next_scope(self) -> str | None:
        """The first queued unit that is nobody's orphan (those wait for a replacement worker)."""
        if not self._orphans:
            return next(iter(self.workqueue), None)
        kept = {scope for batch in self._orphans for scope in batch}
        return next((scope for scope in self.workqueue if scope not in kept), None)

    def _assign_scope(self, node: Any, scope: str) -> None:
        unit = self.workqueue.pop(scope)
        self.assigned_work[node][scope] = unit
        collection = self.registered_collections[node]
        node.send_runtest_some([collection.index(nodeid) for nodeid, done in unit.items() if not done])
