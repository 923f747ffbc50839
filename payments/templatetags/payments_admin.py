"""Template tags of the payments admin."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from ..unfold_internals import result_headers, unfold_result_list

register = template.Library()


@register.simple_tag(takes_context=True)
def fast_result_list(context, cl) -> SafeString:
    """Render the changelist table, its rows in one pass when `FastRows` can.

    Otherwise render it exactly as unfold's `{% unfold_result_list cl %}` does.
    """
    # Imported here: template libraries load while unfold.admin is still importing.
    from ..admin.rows import FastRows

    opts = cl.opts
    fast = FastRows.for_changelist(cl, context.get("actions_row"))
    if fast is None:
        values = unfold_result_list(context, cl)
        names = [
            f"admin/{opts.app_label}/{opts.model_name}/change_list_results.html",
            f"admin/{opts.app_label}/change_list_results.html",
            "admin/change_list_results.html",
        ]
    else:
        values = {
            "cl": cl,
            "headers": headers_html(context, cl) if cl.result_list else "",
            "results": bool(cl.result_list),
            "rows": fast.html(),
        }
        names = ["admin/fast_change_list_results.html"]
    chosen = context.template.engine.select_template(names)
    return chosen.render(context.new(values))


def headers_html(context, cl) -> SafeString:
    """Render the column headers (sort links) as unfold's changelist does."""
    headers = list(result_headers(cl))
    values = {
        "cl": cl,
        "result_headers": headers,
        "num_sorted_fields": sum(1 for h in headers if h["sortable"] and h["sorted"]),
    }
    template_ = context.template.engine.get_template(
        "unfold/helpers/change_list_headers.html"
    )
    return template_.render(context.new(values))
