"""Steps on other xdist workers: the run's board (``run/board.py``) as a pytest run sees it.

Under ``-n N`` a plan's chains go to different workers (``plugin._group_by_chain``), and a
step may need one that another worker runs. The controller turns the board on for each
worker when chains go out in file order; a worker puts every outcome it settles on the
board (:class:`Outcomes`), lists itself while its loop runs, and a step waits there for a
need of another chain (``gate.may_start``); the controller puts "failed" for a step whose
worker crashed (and a line in the summary), and removes the board when the run ends. Registered as a plugin next to
``session.DotasksRun``, only when a plan runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_dotasks.plan.model import Spec
from pytest_dotasks.report import Record

if TYPE_CHECKING:
    from pytest_dotasks.run.board import Board


class Workers:
    def __init__(self, config: pytest.Config, specs: list[Path], parsed: dict[Path, Spec],
                 state_dir: Callable[[Path], Path]) -> None:
        self.config = config
        self.specs = specs
        self.parsed = parsed  # the run's parsed plans (filled as they are collected)
        self.state_dir = state_dir
        self.is_worker = hasattr(config, "workerinput")
        self.run_id: str | None = None  # xdist's id of the run: the controller learns it per node
        if self.is_worker and self.config.workerinput.get("dotasks_board"):  # type: ignore[attr-defined]
            self.run_id = str(self.config.workerinput["testrunuid"])  # type: ignore[attr-defined]
        self._boards: dict[Path, Board] = {}
        self._positions: dict[Path, dict[int, int]] = {}
        self._by_nodeid: dict[tuple[str, str], tuple[Path, int]] = {}  # (plan path, item name) -> step
        self._indexed: set[Path] = set()

    def board_for(self, spec_path: Path) -> Board | None:
        """The plan's board in this run; None outside xdist's loadgroup (one process, or reordered)."""
        if self.run_id is None:
            return None
        if spec_path not in self._boards:
            from pytest_dotasks.run.board import Board

            worker = str(getattr(self.config, "workerinput", {}).get("workerid", "controller"))
            self._boards[spec_path] = Board(self.state_dir(spec_path), self.run_id, spec_path.name, worker)
        return self._boards[spec_path]

    def comes_before(self, spec_path: Path, first: int, second: int) -> bool:
        """``first`` is earlier than ``second`` in the plan's file order."""
        if spec_path not in self._positions:
            spec = self.parsed.get(spec_path)
            self._positions[spec_path] = {s.number: i for i, s in enumerate(spec.steps)} if spec else {}
        pos = self._positions[spec_path]
        return first in pos and second in pos and pos[first] < pos[second]

    def _boards_of_run(self) -> list[Board]:
        return [b for b in map(self.board_for, self.specs) if b is not None]

    # ------------------------------------------------------------ hooks

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Controller, per worker: the board is on when chains go out in file order."""
        if self.config.option.dist != "loadgroup" or getattr(self.config.option, "loadscopereorder", True):
            return
        node.workerinput["dotasks_board"] = True
        self.run_id = str(node.workerinput["testrunuid"])
        for board in self._boards_of_run():
            try:
                board.expect(str(node.workerinput["workerid"]))  # until it registers itself
            except OSError as exc:
                raise pytest.UsageError(
                    f"pytest-dotasks: -n needs the run's board in {board.run_root.parent}, which cannot be "
                    f"written ({exc.strerror or exc}); make .dotasks beside the plan writable, or run without -n"
                ) from None

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Controller: a worker that is down (or died booting) keeps nobody waiting."""
        if self.run_id is not None and not self.is_worker:
            for board in self._boards_of_run():
                board.gone(str(node.workerinput["workerid"]))

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        """Controller: loadgroup without xdist 3.8's hangs after a crashed worker (scheduling.py)."""
        if config.getvalue("dist") != "loadgroup":
            return None
        from pytest_dotasks.scheduling import ChainScheduling

        return ChainScheduling(config, log)

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if self.is_worker:
            for board in self._boards_of_run():
                board.register()  # before any step is handed out
            return
        from pytest_dotasks.run.board import remove_old_runs

        for spec in self.specs:
            remove_old_runs(self.state_dir(spec))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Any:
        try:
            return (yield)
        finally:
            if self.is_worker:
                for board in self._boards_of_run():
                    board.leave()  # runs no more steps: nobody may wait for this worker

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.is_worker:
            for board in self._boards_of_run():
                board.remove()

    def crashed(self, report: pytest.TestReport) -> Record | None:
        """Controller: the summary's record of a step whose worker died under it (xdist's own
        report, which carries none of the step's properties), and "failed" on the board for
        the steps that wait for it on other workers."""
        if self.is_worker or not report.failed or any(k == "dotasks_step" for k, _ in report.user_properties):
            return None
        found = self.step_of_nodeid(report.nodeid)
        if found is None:
            return None
        board = self.board_for(found[0])
        if board is not None:
            board.put_if_absent(found[1], "failed")
        from pytest_dotasks.run.claims import stop_orphans

        stop_orphans(*found)  # its commands must not go on writing after it was reported failed
        step = self.parsed[found[0]].by_number()[found[1]]
        text = str(report.longrepr or "").strip()
        why = text.splitlines()[0] if text else "its worker crashed"
        return Record(spec=str(found[0]), step=step.number, title=step.title, outcome="failed", phase=None,
                      message=f"{why}; no marker was written, the next run runs it again")

    def step_of_nodeid(self, nodeid: str) -> tuple[Path, int] | None:
        """(plan, step) a node id names (``SPEC.md::step8@dotasks-SPEC-chain8``), from the parsed
        plans: how the controller, which collects nothing itself, knows the workers' steps."""
        path, _, rest = nodeid.partition("::")
        key = (path, rest.split("@", 1)[0])
        if key not in self._by_nodeid:
            for spec_path, spec in self.parsed.items():  # index the plans parsed since the last miss
                if spec_path not in self._indexed:
                    self._indexed.add(spec_path)
                    try:
                        rel = spec_path.relative_to(self.config.rootpath).as_posix()
                    except ValueError:
                        rel = spec_path.as_posix()
                    for step in spec.steps:
                        self._by_nodeid[(rel, step.name)] = (spec_path, step.number)
        return self._by_nodeid.get(key)


class Outcomes(dict[tuple[Path, int], str]):
    """``run.outcomes``: a step's outcome in this process, also put on the run's board (if any)."""

    def __init__(self, workers: Workers, started_bg: dict[tuple[Path, int], str]) -> None:
        super().__init__()
        self._workers = workers
        self._started_bg = started_bg

    def __setitem__(self, key: tuple[Path, int], outcome: str) -> None:
        super().__setitem__(key, outcome)
        board = self._workers.board_for(key[0])
        if board is not None:
            board.put(key[1], outcome, self._started_bg.get(key))
