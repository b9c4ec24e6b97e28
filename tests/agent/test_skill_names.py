"""Every Tinker name the ``tinker-api`` skill teaches exists in the installed SDK.

Names are parsed from the markdown, not listed here:

- python code blocks are parsed with ``ast``: ``tinker.X`` / ``types.X`` chains
  (through the block's imports), ``from tinker import X``, attributes of the
  skill's conventional variables (``training_client.forward_backward``...),
  and the keyword arguments of every call whose target resolves;
- inline code spans: the same for expressions, bare snake_case names
  (``forward_backward``, ``ttl_seconds``) against everything the SDK's
  clients and types define, and ``tinker GROUP COMMAND --option`` CLI lines.

The checker is tested on a snippet full of wrong names, so it cannot pass by
finding nothing.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

import pytest_dotasks

tinker = pytest.importorskip("tinker")

TEMPLATES = Path(pytest_dotasks.__file__).parent / "templates" / "tinker" / ".claude"
SKILL = TEMPLATES / "skills" / "tinker-api" / "SKILL.md"
AGENT = TEMPLATES / "agents" / "tinker-executor.md"

# The skill's variable naming convention: a variable with this name holds this SDK object.
VAR_TYPES = {
    "service_client": "tinker.ServiceClient",
    "training_client": "tinker.TrainingClient",
    "sampling_client": "tinker.SamplingClient",
    "rest_client": "tinker.RestClient",
    "fwd_bwd_future": "tinker.APIFuture",
    "optim_future": "tinker.APIFuture",
    "fwd_bwd_result": "tinker.types.ForwardBackwardOutput",
    "optim_result": "tinker.types.OptimStepResponse",
    "caps": "tinker.types.GetServerCapabilitiesResponse",
    "model": "tinker.types.get_server_capabilities_response.SupportedModel",
    "response": "tinker.types.SampleResponse",
    "sequence": "tinker.types.SampledSequence",
    "state": "tinker.types.SaveWeightsResponse",
    "sampler": "tinker.types.SaveWeightsForSamplerResponse",
    "datum": "tinker.types.Datum",
    "model_input": "tinker.types.ModelInput",
    "prompt": "tinker.types.ModelInput",
    "params": "tinker.types.SamplingParams",
    "adam": "tinker.types.AdamParams",
}
CLIENT_CLASSES = ("ServiceClient", "TrainingClient", "SamplingClient", "RestClient", "APIFuture")
NOT_TINKER = {"tinker_cookbook"}  # bare names in inline code that are not the SDK's, on purpose

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
_INLINE = re.compile(r"`([^`\n]+)`")
_DOTTED = re.compile(r"\b([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)")
_SNAKE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+(?:\(\))?=?$")
_CLI = re.compile(r"^tinker((?:\s+[a-z][\w-]*)+)((?:\s+\S+)*)$")


# ------------------------------------------------------------------ resolving names


@cache
def resolve(path: str) -> Any:
    """``tinker.types.AdamParams`` -> the object; raises LookupError when it does not exist."""
    parts = path.split(".")
    obj: Any = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        try:
            obj = importlib.import_module(".".join(parts[: i + 1]))
        except ImportError:
            raise LookupError(path) from None
    return obj


def instance_attributes(cls: type) -> set[str]:
    """Fields (pydantic, dataclass) and ``self.x = ...`` assignments of ``__init__``."""
    names = set(getattr(cls, "model_fields", {}) or {})
    if dataclasses.is_dataclass(cls):
        names |= {f.name for f in dataclasses.fields(cls)}
    try:
        init = vars(cls).get("__init__")
        if init is not None:
            names |= set(re.findall(r"self\.(\w+)\s*[:=]", inspect.getsource(init)))
    except (OSError, TypeError):
        pass
    return names


def has_member(cls: type, name: str) -> bool:
    return hasattr(cls, name) or name in instance_attributes(cls)


def deprecated(target: Any) -> bool:
    doc = (inspect.getdoc(target) or "").lstrip().upper()
    return bool(getattr(target, "__deprecated__", None)) or doc.startswith("DEPRECATED")


def keyword_problems(where: str, target: Any, call: ast.Call) -> list[str]:
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return []
    return [f"{where}: {kw.arg}= is not a parameter" for kw in call.keywords
            if kw.arg is not None and kw.arg not in sig.parameters]


@cache
def sdk_vocabulary() -> frozenset[str]:
    """Every public name the SDK's clients and types define: methods, their parameters, fields."""
    words: set[str] = {n for n in dir(tinker) if not n.startswith("_")}
    classes: list[type] = [getattr(tinker, n) for n in CLIENT_CLASSES]
    for mod in pkgutil.iter_modules(tinker.types.__path__, "tinker.types."):
        module = importlib.import_module(mod.name)
        classes += [c for c in vars(module).values() if inspect.isclass(c) and c.__module__.startswith("tinker")]
    for cls in classes:
        words |= instance_attributes(cls)
        try:
            words |= set(inspect.signature(cls).parameters)  # constructor arguments
        except (TypeError, ValueError):
            pass
        for name, member in inspect.getmembers(cls):
            if name.startswith("_"):
                continue
            words.add(name)
            if callable(member):
                try:
                    words |= set(inspect.signature(member).parameters)
                except (TypeError, ValueError):
                    pass
    return frozenset(words)


# ------------------------------------------------------------------ the checker


@dataclasses.dataclass
class Report:
    checked: list[str] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)


class CodeChecker(ast.NodeVisitor):
    """Resolves tinker names in a python snippet; records what it checked and what is wrong."""

    def __init__(self, report: Report, name: str, first_line: int, *, code_block: bool = False) -> None:
        self.report = report
        self.code_block = code_block  # deprecated names may be mentioned in prose, not taught in code
        self.name = name
        self.first_line = first_line
        self.where = f"{name}:{first_line}"
        self.aliases = {"tinker": "tinker", "types": "tinker.types"}
        self.locals: dict[str, str] = {}  # name = tinker.Cls(...) in this snippet

    def _chain(self, node: ast.AST) -> list[str] | None:
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        parts.append(node.id)
        return parts[::-1]

    def check_chain(self, parts: list[str]) -> Any:
        """The object a dotted chain names, when it can be known; records a problem when it cannot exist."""
        root, rest = parts[0], parts[1:]
        if root in self.aliases:
            path = ".".join([self.aliases[root], *rest])
            self.report.checked.append(path)
            try:
                return resolve(path)
            except LookupError:
                self.report.problems.append(f"{self.where}: {'.'.join(parts)} does not exist in the SDK")
                return None
        kind = self.locals.get(root) or VAR_TYPES.get(root)
        if kind is None or not rest:
            if kind is None and root.endswith("_client") and rest:
                self.report.problems.append(f"{self.where}: {root} is not a known client variable")
            return None
        cls = resolve(kind)
        self.report.checked.append(f"{kind}.{rest[0]}")
        if not has_member(cls, rest[0]):
            self.report.problems.append(f"{self.where}: {root}.{rest[0]} ({cls.__name__}) does not exist")
            return None
        return getattr(cls, rest[0], None) if len(rest) == 1 else None

    def visit(self, node: ast.AST) -> Any:
        if isinstance(node, (ast.stmt, ast.expr)):
            self.where = f"{self.name}:{self.first_line + node.lineno - 1}"
        return super().visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] == "tinker":
                self.aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else "tinker"
                self.check_chain(alias.name.split("."))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if not node.module or node.module.split(".")[0] != "tinker":
            return
        for alias in node.names:
            path = f"{node.module}.{alias.name}"
            self.report.checked.append(path)
            try:
                resolve(path)
            except LookupError:
                self.report.problems.append(f"{self.where}: from {node.module} import {alias.name}: no such name")
                continue
            self.aliases[alias.asname or alias.name] = path

    def visit_Assign(self, node: ast.Assign) -> None:
        if isinstance(node.value, ast.Call) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            parts = self._chain(node.value.func)
            if parts and parts[0] in self.aliases and inspect.isclass(self._quiet(parts)):
                self.locals[node.targets[0].id] = ".".join([self.aliases[parts[0]], *parts[1:]])
        self.generic_visit(node)

    def _quiet(self, parts: list[str]) -> Any:
        try:
            return resolve(".".join([self.aliases[parts[0]], *parts[1:]]))
        except LookupError:
            return None

    def visit_Call(self, node: ast.Call) -> None:
        parts = self._chain(node.func)
        if parts is not None:
            target = self.check_chain(parts)
            if target is not None and callable(target):
                self.report.problems += keyword_problems(f"{self.where}: {'.'.join(parts)}()", target, node)
                if self.code_block and deprecated(target):
                    self.report.problems.append(f"{self.where}: {'.'.join(parts)}() is deprecated in this SDK")
            for arg in [*node.args, *(kw.value for kw in node.keywords)]:
                self.visit(arg)
            return
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        parts = self._chain(node)
        if parts is not None:
            self.check_chain(parts)
            return
        self.generic_visit(node)


def python_blocks(markdown: str) -> Iterator[tuple[int, str]]:
    for m in _FENCE.finditer(markdown):
        if m.group(1).lower() in ("python", "py"):
            yield markdown[: m.start()].count("\n") + 2, m.group(2)


def inline_spans(markdown: str) -> Iterator[tuple[int, str]]:
    prose = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), markdown)
    for m in _INLINE.finditer(prose):
        yield prose[: m.start()].count("\n") + 1, m.group(1).strip()


def check_cli(report: Report, where: str, words: list[str], options: list[str]) -> None:
    import click
    from tinker.cli.__main__ import main_cli

    command: Any = main_cli
    ctx = click.Context(main_cli)
    for word in words:
        if not isinstance(command, click.Group):
            break
        sub = command.get_command(ctx, word)
        if sub is None:
            report.problems.append(f"{where}: `tinker {' '.join(words)}`: no command {word!r}")
            return
        command = sub
    report.checked.append("tinker " + " ".join(words))
    known = {opt for p in command.params for opt in getattr(p, "opts", [])}
    for opt in options:
        if opt.startswith("-") and opt.split("=")[0] not in known:
            report.problems.append(f"{where}: `tinker {' '.join(words)}` has no option {opt}")


def check_markdown(markdown: str, name: str = "SKILL.md") -> Report:
    report = Report()
    for line, code in python_blocks(markdown):
        try:
            tree = ast.parse(code)
        except SyntaxError as exc:
            report.problems.append(f"{name}:{line + (exc.lineno or 1) - 1}: python block does not parse: {exc.msg}")
            continue
        CodeChecker(report, name, line, code_block=True).visit(tree)
    for line, span in inline_spans(markdown):
        where = f"{name}:{line}"
        cli = _CLI.match(span)
        if cli:
            words = [w for w in cli.group(1).split()]
            check_cli(report, where, words, cli.group(2).split())
            continue
        if _SNAKE.match(span):
            word = span.rstrip("=").removesuffix("()")
            if word not in NOT_TINKER:
                report.checked.append(word)
                if word not in sdk_vocabulary():
                    report.problems.append(f"{where}: `{span}` is not a name the SDK defines")
            continue
        try:
            expr = ast.parse(span, mode="eval")
        except SyntaxError:
            checker = CodeChecker(report, name, line)
            for dotted in _DOTTED.findall(span):
                checker.check_chain(dotted.split("."))
            continue
        CodeChecker(report, name, line).visit(expr)
    return report


# ------------------------------------------------------------------ tests


def test_every_tinker_name_in_the_skill_exists() -> None:
    report = check_markdown(SKILL.read_text(encoding="utf-8"))
    assert report.problems == []
    checked = set(report.checked)
    assert len(checked) >= 40, sorted(checked)  # the parser really found the API the skill teaches
    for core in ("tinker.ServiceClient", "tinker.TrainingClient.forward_backward", "tinker.TrainingClient.optim_step",
                 "tinker.ServiceClient.create_lora_training_client", "tinker.types.AdamParams", "tinker.types.Datum",
                 "tinker.TrainingClient.save_weights_for_sampler", "tinker.SamplingClient.sample"):
        assert core in checked, core


BAD_SKILL = '''
```python
import tinker
from tinker import types, Client

service_client = tinker.ServiceClient()
training_client = service_client.create_lora_training_client(base_model="m", lora_rank=8).result()
training_client.forward_backwards(batch, "cross_entropy")
adam = types.AdamParam(learning_rate=1e-4)
params = types.SamplingParams(max_new_tokens=20)
trainer_client.step()
training_client.forward_backward_async(batch, "cross_entropy")
```

Call `sampling_client.generate(prompt)` or `tinker.Sampler`; see `save_checkpoint` and `tinker checkpoint fetch`,
or `tinker checkpoint download tinker://x --into models/`.

```python
def broken(:
```
'''


def test_the_checker_catches_wrong_names() -> None:
    problems = "\n".join(check_markdown(BAD_SKILL, "BAD.md").problems)
    for wrong in ("import Client", "lora_rank=", "forward_backwards", "AdamParam does not exist",
                  "max_new_tokens=", "trainer_client", "generate", "tinker.Sampler", "save_checkpoint",
                  "no command 'fetch'", "no option --into", "does not parse",
                  "forward_backward_async() is deprecated"):
        assert wrong in problems, f"{wrong!r} not reported in:\n{problems}"


def frontmatter(path: Path) -> dict[str, str]:
    text = path.read_text(encoding="utf-8")
    m = re.match(r"^---\n(.*?)\n---\n", text, re.DOTALL)
    assert m, f"{path} has no YAML frontmatter"
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(m.group(1))
    assert isinstance(data, dict)
    return data


def test_skill_and_agent_frontmatter() -> None:
    skill = frontmatter(SKILL)
    assert skill["name"] == "tinker-api" and len(skill["description"]) > 40
    agent = frontmatter(AGENT)
    assert agent["name"] == "tinker-executor" and agent["description"]
    assert [t.strip() for t in agent["tools"].split(",")] == ["Bash", "Read", "Write", "Edit"]
    assert agent["model"] == "sonnet"
    body = AGENT.read_text(encoding="utf-8")
    assert "tinker-api" in body and "STEP RESULT: SUCCESS" in body and "STEP RESULT: FAILURE: " in body
