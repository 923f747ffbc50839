"""unfold's internals that the project uses, held to the installed unfold.

payments/unfold_internals.py is the one module that reaches into
unfold beyond its documented API. Each test here fails when an upgrade of
unfold changes what that module relies on: then compare payments/admin/rows.py
and templates/admin/fast_change_list_results.html with the new unfold, and
record the new fingerprint.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from pathlib import Path

import unfold
from django.template.loader import get_template
from unfold.templatetags import unfold_list
from unfold.utils import display_for_value

from payments import unfold_internals

ROOT = Path(__file__).resolve().parent.parent
UNFOLD_RESULTS = (
    Path(unfold.__file__).parent / "templates/admin/change_list_results.html"
)
# sha256 of the source of unfold's `items_for_result` (the row renderer that
# payments.admin.rows mirrors) and `display_for_value`, for the pinned unfold.
FINGERPRINT = "4a311d0eec55717dd1069742ef4489d62ba34cd502cda24d8574fff11274b13a"


def fingerprint() -> str:
    digest = hashlib.sha256()
    for function in (unfold_list.items_for_result, display_for_value):
        digest.update(inspect.getsource(function).encode())
    return digest.hexdigest()


def test_the_row_renderer_mirrored_by_the_fast_rows_is_unchanged():
    assert fingerprint() == FINGERPRINT, (
        "unfold's items_for_result or display_for_value changed: check "
        "payments/admin/rows.py against it, then record the new fingerprint"
    )


def test_the_pinned_unfold_is_the_installed_one():
    pinned = re.search(
        r"^django-unfold==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M
    )
    installed = inspect.getmodule(unfold).__name__
    assert pinned is not None and installed == "unfold"
    from importlib.metadata import version

    assert version("django-unfold") == pinned.group(1)


def test_the_row_stripes_are_unfolds():
    source = UNFOLD_RESULTS.read_text()
    stripes = re.search(
        r"<tbody class=\"relative \{% cycle '(.*?)' '(.*?)' %\}", source
    )
    assert stripes is not None
    assert stripes.groups() == unfold_internals.STRIPES


def test_the_table_wrapper_copied_into_the_fast_template_is_unfolds():
    ours = (ROOT / "templates/admin/fast_change_list_results.html").read_text()
    assert unfold_internals.TABLE_WRAPPER in UNFOLD_RESULTS.read_text()
    assert unfold_internals.TABLE_WRAPPER in ours
    # The same template is found by name (the project's, not a stale copy).
    assert get_template("admin/fast_change_list_results.html").origin.name.endswith(
        "templates/admin/fast_change_list_results.html"
    )


def test_the_templated_display_options_are_those_unfold_reads():
    source = inspect.getsource(unfold_list.items_for_result)
    for option in unfold_internals.TEMPLATED_DISPLAYS:
        assert f'getattr(attr, "{option}", False)' in source


def test_the_cell_classes_are_unfolds_own_lists():
    assert unfold_internals.LINK_CLASSES is unfold_list.LINK_CLASSES
    assert unfold_internals.TABLE_CELL_CLASSES is unfold_list.TABLE_CELL_CLASSES
    assert (
        unfold_internals.TABLE_ACTION_CELL_CLASSES
        is unfold_list.TABLE_ACTION_CELL_CLASSES
    )


def test_no_other_module_reaches_into_unfold_internals():
    """Only the fence imports unfold's list tags or utils."""
    offenders = []
    for folder in ("payments", "backoffice"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "unfold_internals.py":
                continue
            text = path.read_text()
            if re.search(r"from unfold\.(templatetags|utils)\b", text):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


# The header's breadcrumb: a copy of unfold's template that shows an object's
# name as it is (a payment reference is case-sensitive), not capitalised.
HEADER_TITLE = "unfold/helpers/header_title.html"
CAPITALISED = "        {{ part.title|capfirst }}\n"
AS_IT_IS = (
    "        {% if part.title.pk %}{{ part.title }}"
    "{% else %}{{ part.title|capfirst }}{% endif %}\n"
)


def test_the_header_title_copy_is_unfolds_but_for_the_object_name():
    original = (Path(unfold.__file__).parent / "templates" / HEADER_TITLE).read_text()
    ours = (ROOT / "templates" / HEADER_TITLE).read_text()
    comment_end = "{% endcomment %}"
    assert original.count(CAPITALISED) == 1, "unfold's header title changed"
    assert ours[ours.index(comment_end) + len(comment_end) :] == original.replace(
        CAPITALISED, AS_IT_IS
    )
    assert get_template(HEADER_TITLE).origin.name.endswith(f"templates/{HEADER_TITLE}")
