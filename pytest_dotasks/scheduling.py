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
- only unfinished units go back on the queue, and at its front: they came before everything
  still queued, which keeps the file order that waits between workers rely on (run/board.py);
- a worker always holds two steps, or is told to finish as soon as nothing is left to hand
  out, so it never holds its last step while waiting for one more.
"""

from __future__ import annotations

from typing import Any

from xdist.scheduler.loadgroup import LoadGroupScheduling  # type: ignore[import-untyped, unused-ignore]


class ChainScheduling(LoadGroupScheduling):  # type: ignore[misc, unused-ignore]
    def remove_node(self, node: Any) -> str | None:
        workload = self.assigned_work.pop(node)
        unfinished = {scope: unit for scope, unit in workload.items() if not all(unit.values())}
        if not unfinished:
            return None
        first = next(iter(unfinished.values()))
        crashitem = next(nodeid for nodeid, done in first.items() if not done)
        first[crashitem] = True  # reported failed by xdist: not run again
        again = [(scope, unit) for scope, unit in unfinished.items() if not all(unit.values())]
        rest = list(self.workqueue.items())
        self.workqueue.clear()
        self.workqueue.update(again + rest)
        for other in self.assigned_work:
            self._reschedule(other)
        return crashitem

    def _reschedule(self, node: Any) -> None:
        if node.shutting_down:
            return
        if self.workqueue and self._pending_of(self.assigned_work[node]) <= 2:
            self._assign_work_unit(node)
            # A worker runs a step only once it knows the next one (or that there is none):
            # a replacement worker given one step must get a second, as at the start.
            while self.workqueue and self._pending_of(self.assigned_work[node]) < 2:
                self._assign_work_unit(node)
        if not self.workqueue:
            node.shutdown()  # nothing more to hand out: run what it has, then stop
