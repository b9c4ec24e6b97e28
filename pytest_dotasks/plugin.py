"""pytest-dotasks: the switchboard pytest loads through the ``pytest11`` entry point.

Options and hooks only. Everything that costs anything (the markdown parser,
the run state, the SDKs) is imported when a plan is actually being run.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any, Literal

import pytest

from pytest_dotasks.settings import OPTIONS

_KINDS_HELP = {
    "quick": "a short blocking step",
    "data": "a data-generation step",
    "training": "a training step (runs in the background by default)",
    "evaluation": "an evaluation step",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dotasks", "pytest-dotasks: run a SPEC.md plan as tests (a step's timeout: field "
                            "is a pytest-timeout marker, so it wins over --timeout and the ini; -v shows each "
                            "step's limit)")
    for opt in OPTIONS:
        kwargs: dict[str, Any] = {"dest": opt.dest, "default": None, "help": opt.help}
        if opt.action:
            kwargs["action"] = opt.action
        else:
            kwargs["metavar"] = opt.metavar
        if opt.const is not None:  # the value may be left out: --replay means --replay=strict
            kwargs.update(nargs="?", const=opt.const)
        group.addoption(opt.flag, **kwargs)
        # A named, Literal-typed tag: mypy would otherwise try to read the inline
        # conditional as a TypeForm (addini's ``type`` also accepts types).
        ini_type: Literal["bool", "string"] = "bool" if opt.action == "store_true" else "string"
        parser.addini(opt.ini, help=opt.help, type=ini_type, default=None)
    parser.addini("dotasks_model_aliases", help="Model aliases, one 'alias=model-id' per line.",
                  type="linelist", default=[])


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_dotasks import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def _cli_and_ini(config: pytest.Config) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """Command-line and ini values by option name, and the first ini value pytest refused, as one line.

    pytest converts ``bool`` ini values itself (``dotasks_redo = maybe``: "invalid truth value
    'maybe'", a ValueError in pytest 8, a UsageError naming nothing in pytest 9): that error is
    kept here, with the option's name and the values it takes, and raised only when a plan runs.
    """
    cli = {o.name: config.getoption(o.dest, None) for o in OPTIONS}
    ini: dict[str, Any] = {}
    bad: str | None = None
    for o in OPTIONS:
        try:
            ini[o.name] = config.getini(o.ini)
        except (ValueError, TypeError, pytest.UsageError) as exc:
            ini[o.name] = None
            if bad is None:
                where = f" in {config.inipath.name}" if config.inipath else ""
                allowed = ("write true or false (also yes/no, on/off, 1/0)" if o.action == "store_true"
                           else "see pytest --help")
                bad = f"invalid value for ini option {o.ini}{where}: {str(exc).strip()}; {allowed}"
    return cli, ini, bad


def pytest_configure(config: pytest.Config) -> None:
    for kind, text in _KINDS_HELP.items():
        config.addinivalue_line("markers", f"{kind}: pytest-dotasks step kind: {text}")
    cli, ini, bad_ini = _cli_and_ini(config)
    # `--spec ""` (an unset shell variable) names a plan too: resolve() refuses the empty path.
    wants_spec = cli.get("spec") is not None or ini.get("spec") or any(
        a.split("::", 1)[0].endswith(".md") for a in config.args)
    if not wants_spec:
        return  # plain pytest: nothing more is loaded
    if bad_ini is not None:
        raise pytest.UsageError(bad_ini)
    from pytest_dotasks.errors import DotasksError
    from pytest_dotasks.session import DotasksRun, spec_paths_from
    from pytest_dotasks.settings import resolve
    from pytest_dotasks.stash import RUN_KEY

    try:
        settings = resolve(cli, ini, config.rootpath)
        specs = spec_paths_from(config, settings)
        from pytest_dotasks.plan.selection import parse_steps

        parse_steps(settings.steps)
        from pytest_dotasks.plan.formats.detect import force

        force(settings.plan_format)
    except DotasksError as exc:
        raise pytest.UsageError(exc.one_line()) from None
    if not specs:
        return
    if settings.spec:
        from _pytest.config import Config as _Config

        # `pytest --spec SPEC.md` runs the plan, not the whole test tree too.
        if config.args_source != _Config.ArgsSource.ARGS:
            config.args[:] = [str(specs[0])]
        elif str(specs[0]) not in config.args:
            config.args.append(str(specs[0]))
    if not hasattr(config, "workerinput") and getattr(config.option, "dist", "no") in ("load", "worksteal", "loadgroup"):
        # Steps of one chain must stay on one worker, in order: workers tag each step with its
        # chain (see _group_by_chain) and xdist's loadgroup scheduler keeps a tag on one worker.
        # Chains go out in file order (no reordering by size): a step waiting for another
        # worker's step (run.board) then never waits for one queued behind it.
        config.option.dist = "loadgroup"
        config.option.loadscopereorder = False
    run = DotasksRun(config, settings, specs)
    if not config.option.collectonly:  # a task log that cannot be written: a usage error before any step runs
        from pytest_dotasks.run.tasklog import probe

        try:
            for spec in specs:
                probe(run.log_for(spec).path)
                _check_plan_files(config, settings, spec, run.log_for(spec).path)
        except DotasksError as exc:
            raise pytest.UsageError(exc.one_line()) from None
    config.stash[RUN_KEY] = run
    config.pluginmanager.register(run, "dotasks-run")
    config.pluginmanager.register(run.workers, "dotasks-workers")
    config.pluginmanager.register(_Defaults(), "dotasks-defaults")
    # By module name, not ``from pytest_dotasks import ...``: the package attribute
    # can hold a module from an earlier in-process run (pytester) whose classes
    # are not this run's.
    names = ["fixtures", "verdict"] + (["timeouts"] if config.pluginmanager.hasplugin("timeout") else [])
    for name in names:
        config.pluginmanager.register(importlib.import_module(f"pytest_dotasks.{name}"), f"dotasks-{name}")
    if settings.record or settings.replay or settings.record_missing:  # the cassette proxy (recording.py)
        importlib.import_module("pytest_dotasks.recording").register(config, run)


_CONFIG_NAMES = frozenset({"conftest.py", "pytest.ini", ".pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml"})


def _check_plan_files(config: pytest.Config, settings: Any, spec: Path, log: Path) -> None:
    """Before any step runs: the log must not overwrite a file that configures the run, and a plan
    that will be marked must be writable (else every step would run, then fail at marking)."""
    from pytest_dotasks.errors import DotasksError
    from pytest_dotasks.plan.marking import writable

    real = Path(os.path.realpath(log))
    ini = Path(os.path.realpath(config.inipath)) if config.inipath else None
    if real == Path(os.path.realpath(spec)) or real.name in _CONFIG_NAMES or real == ini:
        raise DotasksError(f"the task log {log} would write into {real.name}, which configures the run",
                           path=log, fix="choose another file with --task-log PATH")
    if not (settings.no_mark or settings.dry_run or settings.verify) and not writable(spec):
        raise DotasksError("the plan file is read-only: no step's marker could be written", path=spec,
                           fix=f"make it writable (chmod u+w {spec.name}) or run with --no-mark")


class _Defaults:
    """The plugin's own implementations of its firstresult hooks (``trylast``)."""

    @pytest.hookimpl(trylast=True)
    def pytest_dotasks_run_checks(self, checks: list[Any], phase: str, ctx: Any, timeout: float,
                                  workers: int) -> list[Any]:
        from pytest_dotasks.run.checks import run_checks
        from pytest_dotasks.run.context import step_env

        return run_checks(checks, root=ctx.root, timeout=timeout, workers=workers, env=step_env(ctx))

    @pytest.hookimpl(trylast=True)
    def pytest_dotasks_agent_session(self, ctx: Any) -> Any:
        from pytest_dotasks.agent.launch import open_session

        return open_session(ctx)


def pytest_unconfigure(config: pytest.Config) -> None:
    detect = sys.modules.get("pytest_dotasks.plan.formats.detect")
    if detect is not None:
        detect.force(None)  # --plan-format holds for this run only (pytester runs many in one process)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    from pytest_dotasks.stash import RUN_KEY

    run = parent.config.stash.get(RUN_KEY, None)
    if run is None or file_path not in run.specs:
        return None
    from pytest_dotasks.items import SpecFile

    return SpecFile.from_parent(parent, path=file_path)


# A bare step name in -k: step8, step2A; Spec Kit's T001, T-001, T320-2; Kiro's 1.1.
_STEP_IDENT = re.compile(r"(?<![\w:+\-.\[\]\\/])(step\d+[a-z]?|T-?\d+(?:-\d+)?|\d+(?:\.\d+)+(?:-\d+)?)(?![\w:+\-.\[\]\\/])",
                         re.IGNORECASE)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    from pytest_dotasks.stash import RUN_KEY

    run = config.stash.get(RUN_KEY, None)
    if run is None:
        return
    from pytest_dotasks.items import StepItem

    steps = [it for it in items if isinstance(it, StepItem)]
    if not steps:
        return
    keyword = config.option.keyword
    if keyword:
        # `-k step1` must mean STEP 1, not 10-19: see items.exact_keyword.
        config.option.keyword = _STEP_IDENT.sub(lambda m: f"[{m.group(1).lower()}]", keyword)
    from pytest_dotasks.plan.selection import parse_steps, select, unknown, unknown_message

    selection = parse_steps(run.settings.steps)
    plans = [[it.step for it in steps if it.spec_path == p] for p in dict.fromkeys(it.spec_path for it in steps)]
    missing = unknown(selection, plans)
    if missing:  # `--steps 7` on a plan without STEP 7: a usage error, not "no tests collected"
        raise pytest.UsageError(unknown_message(missing, plans).one_line())
    for it in steps:  # Kiro's optional tasks ("- [ ]*") run when named or with --optional
        if it.step.optional and not (run.settings.optional or selection.names(it.step)):
            it.add_marker(pytest.mark.skip(reason=f"STEP {it.step.ident} is optional; --optional or "
                                                  f"--steps {it.step.ident} runs it"))
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    by_spec: dict[Path, list[StepItem]] = {}
    for it in steps:
        by_spec.setdefault(it.spec_path, []).append(it)
    chosen: set[int] = set()
    for spec_path, its in by_spec.items():
        wanted = {s.number for s in select([it.step for it in its], selection)}
        run.selected[spec_path] = wanted
        chosen.update(id(it) for it in its if it.step.number in wanted)
    for item in items:
        if isinstance(item, StepItem) and id(item) not in chosen:
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    if hasattr(config, "workerinput"):
        _group_by_chain(run, steps)


def pytest_collection_finish(session: pytest.Session) -> None:
    """The final selection (after -k, -m, --steps): what "selected" means for needs."""
    from pytest_dotasks.stash import RUN_KEY

    run = session.config.stash.get(RUN_KEY, None)
    if run is None:
        return
    from pytest_dotasks.items import StepItem

    final: dict[Path, set[int]] = {}
    for it in session.items:
        if isinstance(it, StepItem):
            final.setdefault(it.spec_path, set()).add(it.step.number)
    for path in run.parsed:
        run.selected[path] = final.get(path, set())
    if not hasattr(session.config, "workerinput"):  # under xdist: the controller's hook below
        _check_readiness(session.config, run)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """xdist's controller collects nothing itself: it checks the selection from a worker's ids."""
    from pytest_dotasks.stash import RUN_KEY

    config = node.config
    run = config.stash.get(RUN_KEY, None)
    if run is None or run.readiness_checked:
        return
    for spec in run.specs:
        run.plan_step(spec, 0)  # parse it here: the controller never collected it
    selected: dict[Path, set[int]] = {spec: set() for spec in run.specs}
    for nodeid in ids:
        found = run.workers.step_of_nodeid(nodeid)
        if found is not None:
            selected.setdefault(found[0], set()).add(found[1])
    for spec, numbers in selected.items():
        run.selected[spec] = numbers
    _check_readiness(config, run)


def _check_readiness(config: pytest.Config, run: Any) -> None:
    """Set-up and selection mistakes: one usage error before any step runs (see readiness.py)."""
    from pytest_dotasks.readiness import render, selection_problems

    run.readiness_checked = True
    if config.option.collectonly:
        return  # looking at the plan runs nothing: nothing to be ready for
    impls = config.pluginmanager.hook.pytest_dotasks_agent_session.get_hookimpls()
    custom_agent = any(impl.plugin_name != "dotasks-defaults" for impl in impls)
    problems: dict[Path, list[str]] = {}
    for spec_path, spec in run.parsed.items():
        found = selection_problems(spec, run.configs[spec_path], run.selected.get(spec_path, set()),
                                   run.settings, custom_agent=custom_agent)
        recording = config.pluginmanager.get_plugin("dotasks-recording")
        if recording is not None:  # --replay: a plan's cassette folder is missing
            found += recording.readiness_problems(spec, run.configs[spec_path], run.selected.get(spec_path, set()))
        if found:
            problems[spec_path] = found
    if not problems:
        return
    text = render(problems, run.settings.dry_run)
    if run.settings.dry_run:
        run.readiness_problems = text  # the dry run goes on and reports them (exit status 4)
        return
    raise pytest.UsageError(text)


def _group_by_chain(run: Any, steps: list[Any]) -> None:
    """Suffix each step's node id with its chain (plan.graph.chains), as xdist's loadgroup expects."""
    from pytest_dotasks.plan.graph import chains
    from pytest_dotasks.plan.model import ident_of

    groups: dict[Path, dict[int, int]] = {}
    for it in steps:
        if it.spec_path not in groups:
            cfgs = run.configs[it.spec_path]
            groups[it.spec_path] = chains({n: c.needs for n, c in cfgs.items()},
                                          [s.number for s in run.parsed[it.spec_path].steps])
        root = groups[it.spec_path][it.step.number]
        _set_nodeid(it, f"{it.nodeid}@dotasks-{it.spec_path.stem}-chain{ident_of(root)}")


def _set_nodeid(item: pytest.Item, nodeid: str) -> None:
    # pytest < 9 keeps the id in ``_nodeid`` (what xdist itself sets for
    # loadgroup); pytest 9 keeps a structured ``_id``.
    if hasattr(item, "_id"):
        # Private pytest 9 module, absent from pytest 8: the ignore is needed only
        # when type-checking against pytest 8 (hence ``unused-ignore`` too).
        from _pytest.nodeid import coerce_node_id  # type: ignore[import-not-found, unused-ignore]

        item._id = coerce_node_id(nodeid)
    else:
        # Private attribute that only pytest 8 has (pytest 9 declares ``_id`` instead).
        item._nodeid = nodeid  # type: ignore[attr-defined, unused-ignore]
