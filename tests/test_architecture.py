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


def test_only_the_demo_commands_import_the_fake_providers():
    """The fake is for the tests, the benches and the DEBUG-only demo commands."""
    demo = {
        "payments/management/commands/devserver.py",
        "payments/management/commands/seed_demo.py",
    }
    offenders = [
        spot
        for spot in imports_of(
            ("payments", "backoffice", "gateways", "audit"), "fakeproviders"
        )
        if spot.split(":")[0] not in demo
    ]
    assert offenders == []
    assert imports_of(("fakeproviders",), "payments") == []
    assert imports_of(("fakeproviders",), "tests") == []


# --- the import graph of payments -------------------------------------------------------
# Every import statement counts, at module level or inside a function; relative
# imports are resolved, so `from ..services import x` is an import of
# payments.services whatever it is called.

# Import cycles that cannot go yet, each with its reason.
ALLOWED_CYCLES: dict[frozenset, str] = {}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str, root: Path) -> bool:
    base = root.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def module_imports(path: Path, root: Path = ROOT) -> list[tuple[str, int]]:
    """Return (module, line) of every import in a file, relative ones resolved.

    `from package import name` imports `package.name` when that is a module
    of the project, else `package` itself.
    """
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{alias.name}" for alias in node.names]
            modules = [full for full in names if is_module(full, root)]
            if len(modules) < len(names):
                modules.append(base)
            found += [(module, node.lineno) for module in modules]
    return found


def imports_into(folder: str, target: str, root: Path = ROOT) -> list[str]:
    """Return file:line of every import of `target` (or below it) in `folder`."""
    return [
        f"{path.relative_to(root)}:{line} imports {module}"
        for path in sorted((root / folder).rglob("*.py"))
        if "migrations" not in path.parts
        for module, line in module_imports(path, root)
        if module == target or module.startswith(f"{target}.")
    ]


def import_graph(package: str, root: Path = ROOT) -> dict[str, set[str]]:
    """Map each module of `package` to the modules of `package` it imports."""
    paths = {
        module_name(path, root): path
        for path in (root / package).rglob("*.py")
        if "migrations" not in path.parts
    }
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        graph[name] = set()
        for module, _line in module_imports(path, root):
            while module and module not in paths:
                module = module.rpartition(".")[0]
            if module and module != name:
                graph[name].add(module)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Return the strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[frozenset[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = {stack.pop()}
            while node not in component:
                component.add(stack.pop())
            if len(component) > 1:
                cycles.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


def test_payments_never_imports_backoffice():
    assert imports_into("payments", "backoffice") == []


def test_selectors_never_import_services():
    assert imports_into("payments/selectors", "payments.services") == []


def test_services_never_import_tasks():
    assert imports_into("payments/services", "payments.tasks") == []


def test_no_import_cycles_among_payments_modules():
    cycles = import_cycles(import_graph("payments"))
    unexpected = [sorted(cycle) for cycle in cycles if cycle not in ALLOWED_CYCLES]
    assert unexpected == []


def test_the_import_checks_see_relative_and_nested_imports(tmp_path):
    package = tmp_path / "shop"
    (package / "services").mkdir(parents=True)
    (package / "selectors").mkdir()
    for name in ("__init__", "tasks", "models", "services/__init__"):
        (package / f"{name}.py").write_text("")
    (package / "selectors" / "__init__.py").write_text(
        "# from ..services import x in a comment\n"
        "text = 'import shop.services'\n"
        "def read():\n"
        "    from ..services import thing\n"
    )
    (package / "services" / "jobs.py").write_text(
        "from .. import models, tasks\nfrom . import jobs\n"
    )
    (package / "models.py").write_text("def later():\n    import shop.tasks\n")
    (package / "tasks.py").write_text("from .models import Model\n")

    assert imports_into("shop/selectors", "shop.services", tmp_path) == [
        "shop/selectors/__init__.py:4 imports shop.services"
    ]
    assert imports_into("shop/services", "shop.tasks", tmp_path) == [
        "shop/services/jobs.py:1 imports shop.tasks"
    ]
    graph = import_graph("shop", tmp_path)
    assert graph["shop.services.jobs"] == {"shop.models", "shop.tasks"}
    assert import_cycles(graph) == [frozenset({"shop.models", "shop.tasks"})]


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


def status_writes(path: Path, *, any_spread: bool = True) -> list[tuple[str, str]]:
    """Return (function, place) of every write to a `status` attribute or column.

    With `any_spread`, every `**values` counts (it may hold a status); without,
    only a dict literal with a "status" key does.
    """
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
                    and any(names_status(k, any_spread) for k in child.keywords)
                ):
                    found.append((name, where(path, child)))
            visit(child, name)

    visit(parsed(path), "<module>")
    return found


def names_status(keyword: ast.keyword, any_spread: bool = True) -> bool:
    """Tell whether a call's keyword is `status=...` or a `**` that may hold it."""
    if keyword.arg is not None:
        return keyword.arg == "status"
    if any_spread:
        return True
    value = keyword.value
    return isinstance(value, ast.Dict) and any(
        isinstance(key, ast.Constant) and key.value == "status" for key in value.keys
    )


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


# Tests that may write a status themselves, each with its reason.
STATUS_WRITING_TESTS = {
    "tests/payments/services/test_migrations.py": "rows of historical models, before a migration",
}
PAYMENT_MAKERS = ("Payment", "PaymentFactory")


def status_constructions(path: Path) -> list[str]:
    """Return where a payment is made with a `status`, in a keyword or a dict literal.

    `**fields` is not followed (test helpers pass dates and flags that way, and
    `payment_in` takes the status as its own argument): the direct forms are.
    """
    found = []
    for node in ast.walk(parsed(path)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name):
            maker = func.id in PAYMENT_MAKERS
        else:
            maker = (
                isinstance(func, ast.Attribute)
                and func.attr in ("create", "get_or_create", "update_or_create")
                and _rooted_at_payment(func.value)
            )
        if maker and any(names_status(k, any_spread=False) for k in node.keywords):
            found.append(where(path, node))
    return found


def test_tests_reach_payment_statuses_through_the_services():
    """Factories make PENDING payments; other statuses come from provider reports."""
    offenders = [
        place
        for path in python_files("tests")
        if str(path.relative_to(ROOT)) not in STATUS_WRITING_TESTS
        for place in status_constructions(path)
        + [place for _function, place in status_writes(path, any_spread=False)]
    ]
    assert offenders == []


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
        "    Payment(status='PAID')\n"
        "    PaymentFactory(email='a@b.c', status='PAID')\n"
        "    Payment.objects.create(**{'status': 'PAID'})\n"
        "    Refund.objects.create(status='SUCCEEDED')\n"
        "    PaymentFactory(email='a@b.c')\n"
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        writes = status_writes(sample)
        made = status_constructions(sample)
    finally:
        ROOT = saved
    assert [function for function, _place in writes] == ["sneaky"] * 4
    assert made == ["sample.py:8", "sample.py:9", "sample.py:10"]


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
