"""``pytest-dotasks init`` (start a project from a plan template) and ``status``.

    pytest-dotasks init DIR                      # the offline quickstart
    pytest-dotasks init --template tinker DIR    # the character-distillation plan
    pytest-dotasks init --run DIR                # ...and run it right away
    pytest-dotasks status [SPEC.md]              # each step's state, without pytest
    python -m pytest_dotasks init DIR            # the same, without the console script

A template is a folder under ``pytest_dotasks/templates/``, copied whole
(``.claude/`` agents and skills included). ``init`` only ever writes into a
new or empty folder: it never overwrites a file.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

PROG = "pytest-dotasks"
DEFAULT_TEMPLATE = "quickstart"
_SKIP = {"__pycache__", ".DS_Store"}

_NEXT = {
    "quickstart": "runs offline in a few seconds, no API keys needed",
    "tinker": "needs TINKER_API_KEY and ANTHROPIC_API_KEY; look first with --dry-run",
}


class InitError(Exception):
    """A one-line reason ``init`` refused; printed as ``pytest-dotasks: error: ...``."""


def templates_root() -> Traversable:
    return resources.files("pytest_dotasks") / "templates"


def template_names() -> list[str]:
    return sorted(p.name for p in templates_root().iterdir() if p.is_dir() and p.name not in _SKIP)


def _walk(node: Traversable, rel: Path) -> Iterator[tuple[Path, Traversable]]:
    """Every file below ``node`` as (relative path, traversable), dotfiles included."""
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name in _SKIP or child.name.endswith((".pyc", ".pyo")):
            continue
        if child.is_dir():
            yield from _walk(child, rel / child.name)
        else:
            yield rel / child.name, child


def template_files(name: str) -> list[tuple[Path, Traversable]]:
    root = templates_root() / name
    if not root.is_dir():
        known = ", ".join(template_names()) or "none"
        raise InitError(f"unknown template {name!r} (available: {known})")
    return list(_walk(root, Path()))


def init(dest: Path, template: str = DEFAULT_TEMPLATE) -> list[Path]:
    """Copy ``template`` into ``dest`` (new or empty). Returns the relative paths written."""
    files = template_files(template)
    if dest.exists():
        if not dest.is_dir():
            raise InitError(f"{dest} exists and is not a folder; choose a new folder")
        if any(dest.iterdir()):
            raise InitError(f"{dest} is not empty; choose a new folder (init never overwrites files)")
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for rel, src in files:
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            # "xb": refuse to replace a file that appeared meanwhile.
            with open(target, "xb") as fh:
                fh.write(src.read_bytes())
    except OSError as exc:
        raise InitError(f"cannot write {exc.filename or dest}: {exc.strerror}") from None
    return [rel for rel, _ in files]


def _command(dest: Path) -> str:
    return f"cd {shlex.quote(str(dest))} && python -m pytest --spec SPEC.md -v"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Run a markdown plan (SPEC.md) as pytest tests.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("init", help="write a plan template into a new folder",
                       description="Write a plan template into a new (or empty) folder.")
    p.add_argument("dir", metavar="DIR", type=Path, help="the folder to create")
    p.add_argument("-t", "--template", default=DEFAULT_TEMPLATE, metavar="NAME",
                   help=f"template to copy: {', '.join(template_names())} (default: {DEFAULT_TEMPLATE})")
    p.add_argument("--run", action="store_true",
                   help="then run the plan there: python -m pytest --spec SPEC.md -v")
    st = sub.add_parser("status", help="show each step's state and the running background steps",
                        description="Show a plan's status without running pytest.")
    st.add_argument("spec", metavar="SPEC", type=Path, nargs="?", default=Path("SPEC.md"),
                    help="the plan (default: SPEC.md in this folder)")
    return parser


def status(spec: Path) -> int:
    """Print the plan's status table; a one-line error (exit 2) for anything that is not a plan."""
    from pytest_dotasks.errors import DotasksError
    from pytest_dotasks.status import status_lines

    problem = _not_a_plan(spec)
    if problem is not None:
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 2
    try:
        lines = status_lines(spec)
    except DotasksError as exc:
        print(f"{PROG}: error: {exc.one_line()}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{PROG}: error: {spec}: cannot read the plan: {exc.strerror}; make it readable or name another "
              f"plan: {PROG} status path/SPEC.md", file=sys.stderr)
        return 2
    try:
        print("\n".join(lines), flush=True)
    except BrokenPipeError:  # `pytest-dotasks status | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _not_a_plan(spec: Path) -> str | None:
    """Why ``spec`` cannot be a plan file (missing, a folder, a device), or None."""
    usage = f"{PROG} status path/SPEC.md"
    if spec.is_dir():
        inside = [p.name for p in (spec / "SPEC.md", spec / "tasks.md") if p.is_file()]
        example = shlex.quote(str(spec / (inside[0] if inside else "SPEC.md")))
        return f"{spec} is a folder, not a plan file; name the plan in it: {PROG} status {example}"
    if not spec.exists():
        return f"{spec}: no such plan file; name one: {usage}"
    if not spec.is_file():
        return f"{spec} is not a regular file; name the plan: {usage}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "status":
        return status(args.spec)
    dest: Path = args.dir.expanduser()
    try:
        written = init(dest, args.template)
    except InitError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    shown = [str(p) for p in written if len(p.parts) == 1 or p.parts[0] != ".claude"]
    extra = len(written) - len(shown)
    print(f"Wrote the {args.template} plan to {dest}: {', '.join(shown)}"
          + (f" and {extra} file(s) under .claude/" if extra else ""))
    if not args.run:
        print(f"Next ({_NEXT.get(args.template, 'see SPEC.md')}):")
        print(f"  {_command(dest)}")
        return 0
    cmd = [sys.executable, "-m", "pytest", "--spec", "SPEC.md", "-v"]
    print(f"Running: {_command(dest)}", flush=True)
    try:
        code = subprocess.call(cmd, cwd=dest)
    except KeyboardInterrupt:
        return 130
    where = shlex.quote(str(dest))
    print(f"\nThe plan ran in {dest} (SPEC.md there now carries the markers). Next, from there:")
    print(f"  cd {where}")
    print(f"  {PROG} status                      # each step's state")
    print("  python -m pytest --spec SPEC.md -v --redo  # run every step again")
    return code
