"""Is the selection ready to run? Checked once, before any step runs.

Set-up and selection mistakes (no credentials for the selected agent steps, a
dependency neither done nor selected, an unknown agent or skill) are not step
failures: they are reported together as one usage error (exit status 4) with
their fixes, and nothing is marked. ``--dry-run`` reports the same problems.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from pytest_dotasks.agent import definitions as defs
from pytest_dotasks.agent.pricing import settings_prices
from pytest_dotasks.errors import DotasksError
from pytest_dotasks.plan.fields import StepConfig
from pytest_dotasks.plan.model import STATUS_DONE, STATUS_RUNNING, Spec, Step
from pytest_dotasks.report import ranges
from pytest_dotasks.settings import Settings

# What each backend accepts as credentials (the SDKs' own variables).
ANTHROPIC_KEYS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
CLAUDE_CODE_KEYS = (*ANTHROPIC_KEYS, "CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX")


def _steps_option(spec: Spec, numbers: Iterable[int]) -> str:
    return "--steps " + ranges(in_plan_order(spec, numbers)).replace(", ", ",")


def in_plan_order(spec: Spec, numbers: Iterable[int]) -> list[int]:
    """``numbers`` as the plan lists its steps (``2A`` between ``1`` and ``5``), not by the internal key."""
    wanted = set(numbers)
    return [s.number for s in spec.steps if s.number in wanted]


def _settled(step: Step) -> bool:
    return step.marker.status in (STATUS_DONE, STATUS_RUNNING)


def will_run(step: Step, settings: Settings) -> bool:
    """A selected step whose body this run would start."""
    return not settings.verify and (settings.redo or not step.done)


def dependency_problems(spec: Spec, cfgs: Mapping[int, StepConfig], selected: set[int],
                        settings: Settings) -> list[str]:
    """Selected steps needing steps that are neither done (or running) nor selected, transitively."""
    by_number = spec.by_number()
    problems: list[str] = []
    wanted: set[int] = set()
    for step in spec.steps:
        if step.number not in selected or not will_run(step, settings):
            continue
        missing: set[int] = set()
        todo = list(cfgs[step.number].needs)
        while todo:
            dep = todo.pop()
            dep_step = by_number.get(dep)
            if dep in missing or dep in selected or dep_step is None or _settled(dep_step):
                continue
            missing.add(dep)
            todo.extend(cfgs[dep].needs)
        if missing:
            wanted |= missing | {step.number}
            which = ", ".join(f"STEP {by_number[n].ident}" for n in in_plan_order(spec, missing))
            verb = "is" if len(missing) == 1 else "are"
            problems.append(f"{step.location}: STEP {step.ident} needs {which}, which {verb} neither done nor selected")
    if wanted:
        problems.append(f"  fix: run them together: {_steps_option(spec, wanted | selected)}")
    return problems + _later_needs(spec, cfgs, selected, settings)


def _later_needs(spec: Spec, cfgs: Mapping[int, StepConfig], selected: set[int], settings: Settings) -> list[str]:
    """Selected steps needing a step below them that is not done: steps run in file order, so
    that need could never be met in this run."""
    position = {s.number: i for i, s in enumerate(spec.steps)}
    by_number = spec.by_number()
    problems: list[str] = []
    for step in spec.steps:
        if step.number not in selected or not will_run(step, settings):
            continue
        for dep in cfgs[step.number].needs:
            dep_step = by_number.get(dep)
            if dep_step is not None and position[dep] > position[step.number] and not _settled(dep_step):
                problems.append(f"{step.location}: STEP {step.ident} needs STEP {dep_step.ident}, which comes after "
                                f"it in the plan (steps run in file order); fix: move STEP {dep_step.ident} above "
                                f"STEP {step.ident}, or run it first (--steps {dep_step.ident})")
    return problems


def _has_credentials(backend: str, environ: Mapping[str, str], home: Path) -> bool:
    if backend == "anthropic":
        return any(environ.get(k) for k in ANTHROPIC_KEYS)
    if backend == "claude-code":
        config_dir = Path(environ.get("CLAUDE_CONFIG_DIR") or home / ".claude")
        return any(environ.get(k) for k in CLAUDE_CODE_KEYS) or (config_dir / ".credentials.json").is_file()
    return True  # command: the CLI agent brings its own


def credential_problems(agent_steps: list[Step], settings: Settings, environ: Mapping[str, str],
                        home: Path) -> list[str]:
    backend = settings.agent_backend
    if settings.values.get("replay") and not settings.values.get("record_missing"):
        return []  # --replay: the cassettes answer; no key is needed (recording.py gives the SDKs a placeholder)
    if not agent_steps or _has_credentials(backend, environ, home):
        return []
    which = ", ".join(s.ident for s in agent_steps)
    plural = "s" if len(agent_steps) > 1 else ""
    if backend == "anthropic":
        fix = ("export ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN), choose another --agent-backend, "
               "or leave these steps out")
        need = "ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN) is not set"
    else:
        fix = "export ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN, or log in with `claude /login`"
        need = "no ANTHROPIC_API_KEY, ANTHROPIC_AUTH_TOKEN, CLAUDE_CODE_OAUTH_TOKEN or Claude Code login was found"
    return [f"agent step{plural} {which} need credentials for the {backend} backend: {need}", f"  fix: {fix}"]


def definition_problems(agent_steps: list[Step], cfgs: Mapping[int, StepConfig], settings: Settings,
                        root: Path) -> list[str]:
    """Unknown or unloadable agents and skills that a selected agent step asks for, and an unusable
    price table (--prices). The agent layer's own rules decide (``definitions.choose_agent``,
    ``select_skills``): a skill only the agent names is a warning when the step runs, not a problem."""
    problems: dict[str, str] = {}
    if agent_steps:
        try:
            settings_prices(settings)
        except DotasksError as exc:
            problems["prices"] = exc.one_line()
    for step in agent_steps:
        cfg = cfgs[step.number]
        name = cfg.agent or settings.agent
        explicit = cfg.agent is not None or settings.sources.get("agent", "default") != "default"
        try:
            defs.choose_agent(root, name, explicit=explicit)
        except DotasksError as exc:
            problems.setdefault(f"agent:{name}", f"STEP {step.ident}: {exc.one_line()}")
        wanted = [*cfg.skills, *defs.split_names(settings.skills or "", key="skills")]
        try:
            defs.select_skills(root, wanted)
        except DotasksError as exc:
            problems.setdefault(f"skills:{','.join(wanted)}", f"STEP {step.ident}: {exc.one_line()}")
    return list(problems.values())


def selection_problems(spec: Spec, cfgs: Mapping[int, StepConfig], selected: set[int], settings: Settings, *,
                       custom_agent: bool, environ: Mapping[str, str] | None = None,
                       home: Path | None = None) -> list[str]:
    """Every problem that would make the selected steps fail before they start, with fixes.

    ``custom_agent``: a conftest implements ``pytest_dotasks_agent_session``, so
    our backends' credentials are not needed.
    """
    environ = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    agent_steps = [s for s in spec.steps if s.number in selected and will_run(s, settings)
                   and cfgs[s.number].run is None]
    problems = dependency_problems(spec, cfgs, selected, settings)
    if not custom_agent:
        problems += credential_problems(agent_steps, settings, environ, home)
        problems += definition_problems(agent_steps, cfgs, settings, spec.path.parent)
    return problems


def render(problems_by_plan: Mapping[Path, list[str]], dry_run: bool) -> str:
    """One usage error naming every problem and its fix."""
    count = sum(1 for lines in problems_by_plan.values() for ln in lines if not ln.startswith("  "))
    head = (f"pytest-dotasks: {count} problem{'s' if count != 1 else ''} "
            + ("would stop a real run" if dry_run else "before any step runs (nothing was run or marked)") + ":")
    body = [f"  {ln}" for lines in problems_by_plan.values() for ln in lines]
    return "\n".join([head, *body])
