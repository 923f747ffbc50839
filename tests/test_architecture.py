"""Layering rules, checked on the parsed code (a comment or a string cannot fool them)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from gateways.registry import ADAPTERS

ROOT = Path(__file__).resolve().parent.parent
APP_DIRS = ("payments", "backoffice", "templates", "static")
CODES = "|".join(map(re.escape, ADAPTERS))
BRANCH = re.compile(
    rf"""(==|!=)\s*["']({CODES})["']|["']({CODES})["']\s*(==|!=)"""
    rf"""|\bin\s*[\(\[\{{]\s*["']({CODES})["']|\bifequal\b"""
)


def python_files(*folders: str):
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{node.lineno}"


# --- no gateway branches in the app (templates and JS are text: a pattern) --------------


def app_files():
    for folder in APP_DIRS:
        for path in (ROOT / folder).rglob("*"):
            if (
                path.suffix in {".py", ".html", ".js"}
                and "migrations" not in path.parts
            ):
                yield path


def test_no_branches_on_gateway_codes_outside_gateways():
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in app_files()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if BRANCH.search(line)
    ]
    assert offenders == []


def test_the_branch_check_itself_catches_a_branch():
    assert BRANCH.search('if payment.payment_gateway == "coinpayments":')
    assert BRANCH.search("if 'mpgs' != code:")
    assert BRANCH.search('if code in ("sandbox", "mpgs"):')
    assert not BRANCH.search('get_gateway("sandbox")')


# --- imports -------------------------------------------------------------------------------


def imported_modules(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node, node.module


def imports_of(folders: tuple[str, ...], package: str) -> list[str]:
    return [
        where(path, node)
        for path in python_files(*folders)
        for node, module in imported_modules(parsed(path))
        if module == package or module.startswith(f"{package}.")
    ]


def test_gateways_never_import_payments():
    assert imports_of(("gateways",), "payments") == []


def test_views_admin_forms_and_tasks_reach_gateways_only_through_services():
    folders = ("payments/views", "payments/admin", "backoffice")
    offenders = imports_of(folders, "gateways")
    for name in ("forms.py", "tasks.py"):
        path = ROOT / "payments" / name
        offenders += [
            where(path, node)
            for node, module in imported_modules(parsed(path))
            if module.split(".")[0] == "gateways"
        ]
    assert offenders == []


def fake_requests(tree: ast.Module) -> list[ast.AST]:
    """Nodes that import or name Django's RequestFactory (a request made up in code)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom | ast.Import):
            if any(alias.name == "RequestFactory" for alias in node.names):
                found.append(node)
        elif (isinstance(node, ast.Name) and node.id == "RequestFactory") or (
            isinstance(node, ast.Attribute) and node.attr == "RequestFactory"
        ):
            found.append(node)
    return found


def test_no_layer_fakes_a_request_to_ask_another_for_its_work():
    """The export job asks the payment list's selector, not the admin, for its rows."""
    offenders = [
        where(path, node)
        for path in python_files("payments", "backoffice", "bench")
        for node in fake_requests(parsed(path))
    ]
    assert offenders == []


def test_the_fake_request_check_itself_catches_one():
    for code in (
        "from django.test import RequestFactory",
        "import django.test\nrequest = django.test.RequestFactory().get('/')",
        "def f():\n    from django.test.client import RequestFactory as R",
    ):
        assert fake_requests(ast.parse(code)), code
    assert not fake_requests(ast.parse("# RequestFactory\nx = 'RequestFactory'"))


# --- one writer of a payment's status ---------------------------------------------------


def status_writes(path: Path) -> list[tuple[str, str]]:
    """Return (function, place) of every write to a `status` attribute or column."""
    found = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = function
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = child.name
            targets = []
            if isinstance(child, ast.Assign):
                targets = child.targets
            elif isinstance(child, ast.AugAssign | ast.AnnAssign):
                targets = [child.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr == "status":
                    found.append((name, where(path, child)))
            if isinstance(child, ast.Call):
                func = child.func
                if isinstance(func, ast.Name) and func.id == "setattr":
                    arg = child.args[1] if len(child.args) > 1 else None
                    if isinstance(arg, ast.Constant) and arg.value == "status":
                        found.append((name, where(path, child)))
                if (
                    isinstance(func, ast.Attribute)
                    and func.attr in ("update", "bulk_update")
                    and _rooted_at_payment(func.value)
                    # `status=...`, or `**values` that may hold it
                    and any(k.arg in ("status", None) for k in child.keywords)
                ):
                    found.append((name, where(path, child)))
            visit(child, name)

    visit(parsed(path), "<module>")
    return found


def _rooted_at_payment(node: ast.AST) -> bool:
    while isinstance(node, ast.Attribute | ast.Call):
        node = node.value if isinstance(node, ast.Attribute) else node.func
    return isinstance(node, ast.Name) and node.id == "Payment"


def test_only_the_transition_module_writes_a_payment_status():
    """One function assigns it (after the table check), one writes the rows."""
    writes = [
        write
        for path in python_files("payments", "gateways", "backoffice")
        for write in status_writes(path)
    ]
    functions = sorted(function for function, _place in writes)
    assert functions == ["_write_rows", "_write_status"], writes
    assert all(
        place.startswith("payments/services/transitions.py") for _f, place in writes
    )


def test_the_status_check_sees_through_formatting(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "# payment.status = 'x' in a comment\n"
        "text = 'payment.status = 1'\n"
        "def sneaky(p):\n"
        "    p.status  =  'PAID'\n"
        "    setattr(p, 'status', 'PAID')\n"
        "    Payment.objects.filter(pk=1).update(status='PAID')\n"
        "    Payment.objects.filter(pk=1).update(**{'status': 'PAID'})\n"
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        writes = status_writes(sample)
    finally:
        ROOT = saved
    assert [function for function, _place in writes] == ["sneaky"] * 4


# --- small services, thin tasks ------------------------------------------------------------


def functions(path: Path):
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_no_service_function_is_over_60_lines():
    long = [
        f"{where(path, node)} {node.name}: {node.end_lineno - node.lineno + 1} lines"
        for path in python_files("payments/services")
        for node in functions(path)
        if node.end_lineno - node.lineno + 1 > 60
    ]
    assert long == []


@pytest.mark.parametrize("name", ["tasks.py"])
def test_tasks_are_thin(name):
    """A task takes ids and makes one service call: no loops, no queries."""
    path = ROOT / "payments" / name
    heavy = [
        where(path, node)
        for function in functions(path)
        for node in ast.walk(function)
        if isinstance(node, ast.For | ast.While | ast.With)
        or (isinstance(node, ast.Attribute) and node.attr == "objects")
    ]
    assert heavy == []
