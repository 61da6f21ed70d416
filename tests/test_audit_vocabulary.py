"""Audit actions and target types come from one vocabulary, and the audit page can filter
for every action that lands in an organisation's trail.

The filter once missed actions that services recorded, because each side kept its own list
of strings. These tests walk the vocabulary through the page's form and the API's schema,
and walk the source (with ``ast``) so that recording a new action as a string literal, or
recording an account-only action in an organisation's trail, fails here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from audit.api import EventFilter
from audit.forms import AuditFilterForm
from audit.models import ACCOUNT_ACTIONS, ORG_ACTIONS, AuditAction, TargetType
from excloud_portal.api import api

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("accounts", "audit", "exc_cli", "excloud_portal", "gateway", "keys", "mfa")
# The one module allowed to spell actions and target types as strings.
VOCABULARY = ROOT / "audit" / "models.py"
# Where audit's record() lives, under the names modules import it from.
RECORD_MODULES = {"audit.trail", ".trail"}
ACTION_VALUES = {action.value for action in AuditAction}


def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            yield path, ast.parse(path.read_text(), filename=str(path))


SOURCES = list(_sources())


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"


# The page and the API


@pytest.mark.parametrize("action", ORG_ACTIONS, ids=str)
def test_it_lets_the_audit_page_filter_for_every_org_action(action):
    form = AuditFilterForm({"action": action.value})
    assert form.is_valid(), form.errors
    assert form.to_filter().action == action.value


@pytest.mark.parametrize("action", ORG_ACTIONS, ids=str)
def test_it_lets_the_api_filter_for_every_org_action(action):
    assert EventFilter.model_validate({"action": action.value}).action == action.value


def test_it_lists_every_org_action_in_the_api_document():
    operation = api.get_openapi_schema()["paths"]["/api/v1/audit/events"]["get"]
    (parameter,) = (p for p in operation["parameters"] if p["name"] == "action")
    schema = parameter["schema"]
    # An optional parameter is written as anyOf [the enum, null] or as the enum itself.
    enums = [s["enum"] for s in schema.get("anyOf", [schema]) if "enum" in s]
    assert enums == [[action.value for action in ORG_ACTIONS]]


@pytest.mark.parametrize("action", sorted(ACCOUNT_ACTIONS), ids=str)
def test_it_keeps_account_actions_off_the_org_filter(action):
    # They are recorded outside any organisation, so no organisation's page holds them.
    assert not AuditFilterForm({"action": action.value}).is_valid()


def test_it_sorts_every_action_into_org_or_account_actions():
    assert set(ORG_ACTIONS) | ACCOUNT_ACTIONS == set(AuditAction)
    assert not set(ORG_ACTIONS) & ACCOUNT_ACTIONS


# The source


@dataclass(frozen=True)
class Recorder:
    """A function that records an audit event with the action its caller passes it."""

    name: str
    position: int  # of the action among the call's positional arguments
    keyword: str
    # True or False when the event's org is fixed by the function; None when each call's
    # own org= argument says (record() itself).
    in_org: bool | None
    # A private function is looked for only in the module that defines it.
    module: Path | None


@dataclass
class Walk:
    recorded: dict[AuditAction, list[str]]
    problems: list[str]
    calls: int


def _imports_record(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.ImportFrom)
        and f"{'.' * node.level}{node.module or ''}" in RECORD_MODULES
        and any(alias.name == "record" and alias.asname is None for alias in node.names)
        for node in ast.walk(tree)
    )


def _parents(tree: ast.Module) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _enclosing(node: ast.AST, parents: dict[ast.AST, ast.AST], kind) -> ast.AST | None:
    while node in parents:
        node = parents[node]
        if isinstance(node, kind):
            return node
    return None


def _calls_of(recorder: Recorder) -> Iterator[tuple[Path, ast.Module, ast.Call]]:
    for path, tree in SOURCES:
        if recorder.module is not None and path != recorder.module:
            continue
        if recorder.name == "record" and not _imports_record(tree):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id == recorder.name:
                yield path, tree, node
            elif (
                recorder.name != "record"
                and isinstance(func, ast.Attribute)
                and func.attr == recorder.name
            ):
                yield path, tree, node


def _action_argument(call: ast.Call, recorder: Recorder) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == recorder.keyword:
            return keyword.value
    if len(call.args) > recorder.position:
        return call.args[recorder.position]
    return None


def _in_org(call: ast.Call) -> bool:
    return any(
        k.arg == "org" and not (isinstance(k.value, ast.Constant) and k.value.value is None)
        for k in call.keywords
    )


def _class_values(tree: ast.Module, attribute: str) -> list[ast.expr]:
    """What the module's classes assign to ``attribute`` in their bodies."""
    values = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for statement in node.body:
                if isinstance(statement, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == attribute for t in statement.targets
                ):
                    values.append(statement.value)
    return values


def _resolve(expr: ast.expr, tree: ast.Module, function) -> Iterator[AuditAction | str]:
    """The AuditAction members an action argument can be, or the name of the enclosing
    function's parameter it forwards. Anything else raises ValueError."""
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
        if expr.value.id == "AuditAction":
            if expr.attr not in AuditAction.__members__:
                raise ValueError(f"AuditAction has no member {expr.attr}")
            yield AuditAction[expr.attr]
            return
        if expr.value.id == "self":
            values = _class_values(tree, expr.attr)
            if not values:
                raise ValueError(f"no class here sets {expr.attr}")
            for value in values:
                yield from _resolve(value, tree, None)
            return
    if isinstance(expr, ast.IfExp):
        yield from _resolve(expr.body, tree, function)
        yield from _resolve(expr.orelse, tree, function)
        return
    if isinstance(expr, ast.Name) and function is not None:
        if expr.id in [a.arg for a in function.args.posonlyargs + function.args.args]:
            yield expr.id
            return
        if expr.id in [a.arg for a in function.args.kwonlyargs]:
            yield expr.id
            return
    raise ValueError("not an AuditAction member")


def _forwarding(function, parameter: str, in_org: bool, path: Path) -> Recorder:
    positional = [a.arg for a in function.args.posonlyargs + function.args.args]
    if positional and positional[0] in {"self", "cls"}:
        positional = positional[1:]
    return Recorder(
        name=function.name,
        position=positional.index(parameter) if parameter in positional else 10**6,
        keyword=parameter,
        in_org=in_org,
        module=path if function.name.startswith("_") else None,
    )


@cache
def _walk_recorders() -> Walk:
    walk = Walk(recorded={}, problems=[], calls=0)
    pending = [Recorder("record", position=1, keyword="action", in_org=None, module=None)]
    seen: set[Recorder] = set()
    while pending:
        recorder = pending.pop()
        if recorder in seen:
            continue
        seen.add(recorder)
        for path, tree, call in _calls_of(recorder):
            walk.calls += 1
            where = _where(path, call)
            parents = _parents(tree)
            function = _enclosing(call, parents, (ast.FunctionDef, ast.AsyncFunctionDef))
            expr = _action_argument(call, recorder)
            if expr is None:
                walk.problems.append(f"{where}: {recorder.name}() without an action")
                continue
            in_org = recorder.in_org if recorder.in_org is not None else _in_org(call)
            try:
                resolved = list(_resolve(expr, tree, function))
            except ValueError as error:
                walk.problems.append(f"{where}: action {ast.unparse(expr)}: {error}")
                continue
            for found in resolved:
                # AuditAction members are strings too: test for them first.
                if not isinstance(found, AuditAction):
                    pending.append(_forwarding(function, found, in_org, path))
                    continue
                walk.recorded.setdefault(found, []).append(where)
                if in_org and found not in ORG_ACTIONS:
                    walk.problems.append(
                        f"{where}: {found.name} lands in an org's trail but is an account action"
                    )
                if not in_org and found in ORG_ACTIONS:
                    walk.problems.append(
                        f"{where}: {found.name} is recorded outside any org, so add it to "
                        "ACCOUNT_ACTIONS"
                    )
    return walk


def test_it_finds_the_record_calls():
    # A walk that found nothing would pass everything: make sure it reaches the services.
    assert _walk_recorders().calls >= 40


def test_it_records_only_audit_action_members():
    problems = _walk_recorders().problems
    assert not problems, "\n".join(problems)


def test_it_records_every_audit_action_somewhere():
    # A member nobody records is a filter option that can never match.
    assert set(AuditAction) - set(_walk_recorders().recorded) == set()


def test_it_passes_target_types_to_record_as_target_type_members():
    problems = []
    for path, tree in SOURCES:
        if not _imports_record(tree):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id != "record":
                    continue
                for keyword in node.keywords:
                    value = keyword.value
                    if keyword.arg == "target_type" and not (
                        isinstance(value, ast.Attribute)
                        and isinstance(value.value, ast.Name)
                        and value.value.id == "TargetType"
                        and value.attr in TargetType.__members__
                    ):
                        problems.append(f"{_where(path, node)}: {ast.unparse(value)}")
    assert not problems, "\n".join(problems)


def _is_text(node: ast.AST) -> bool:
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str)
    )


def test_it_spells_no_action_or_target_type_as_a_string_outside_the_vocabulary():
    problems = []
    for path, tree in SOURCES:
        if path == VOCABULARY:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in ACTION_VALUES:
                problems.append(f"{_where(path, node)}: {node.value!r}")
            elif isinstance(node, ast.keyword) and (node.arg or "").startswith("target_type"):
                if _is_text(node.value):
                    problems.append(f"{_where(path, node.value)}: {ast.unparse(node)}")
            elif isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                if any(
                    isinstance(s, ast.Attribute) and s.attr == "target_type" for s in sides
                ) and any(_is_text(s) for s in sides):
                    problems.append(f"{_where(path, node)}: {ast.unparse(node)}")
    assert not problems, "\n".join(problems)
