"""Layering rules that keep adding a provider a matter of one adapter."""

from __future__ import annotations

import re
from pathlib import Path

from gateways.registry import ADAPTERS

ROOT = Path(__file__).resolve().parent.parent
APP_DIRS = ("payments", "backoffice", "templates", "static")
CODES = "|".join(map(re.escape, ADAPTERS))
BRANCH = re.compile(
    rf"""(==|!=)\s*["']({CODES})["']|["']({CODES})["']\s*(==|!=)"""
    rf"""|\bin\s*[\(\[\{{]\s*["']({CODES})["']|\bifequal\b"""
)


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


def test_the_check_itself_catches_a_branch():
    assert BRANCH.search('if payment.payment_gateway == "coinpayments":')
    assert BRANCH.search("if 'mpgs' != code:")
    assert BRANCH.search('if code in ("sandbox", "mpgs"):')
    assert not BRANCH.search('get_gateway("sandbox")')


def test_gateways_never_import_payments():
    pattern = re.compile(r"^\s*(from|import)\s+payments\b", re.MULTILINE)
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "gateways").rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert offenders == []


def test_only_one_place_assigns_a_payment_status():
    assignment = re.compile(r"\.status\s*=[^=]")
    hits = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("payments", "gateways", "backoffice")
        for path in (ROOT / folder).rglob("*.py")
        if "migrations" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if assignment.search(line)
    ]
    assert len(hits) == 1 and hits[0].startswith("payments/services/core.py"), hits
