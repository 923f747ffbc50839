"""Template tags of the payments admin."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe
from unfold.templatetags.unfold_list import result_headers
from unfold.templatetags.unfold_list import result_list as unfold_result_list

from backoffice.fragments import (
    FRAGMENTS,
    list_part_key,
    remember,
    sidebar_key,
    skeleton_key,
    template_key,
)

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
    """Render the column headers (sort links), memoised per query string."""

    def render() -> str:
        headers = list(result_headers(cl))
        values = {
            "cl": cl,
            "result_headers": headers,
            "num_sorted_fields": sum(
                1 for h in headers if h["sortable"] and h["sorted"]
            ),
        }
        template_ = context.template.engine.get_template(
            "unfold/helpers/change_list_headers.html"
        )
        return template_.render(context.new(values))

    key = list_part_key("headers", cl, context.get("request"))
    html = FRAGMENTS.remember(key, render)
    return mark_safe(html)  # noqa: S308 - rendered by the template engine


@register.simple_tag(takes_context=True)
def template_memo_key(context, template_name: str) -> str:
    """Return the memo key of a memoised unfold template (backoffice.fragments)."""
    return template_key(template_name, context)


@register.simple_tag(takes_context=True)
def skeleton_memo_key(context, part: str) -> str:
    """Return the memo key of a part of the page skeleton (backoffice.fragments)."""
    return skeleton_key(part, context)


@register.simple_tag(takes_context=True)
def sidebar_memo_key(context) -> str:
    """Return the memo key of the sidebar's entries (backoffice.fragments)."""
    return sidebar_key(context)


class MemoNode(template.Node):
    def __init__(self, nodelist, key):
        self.nodelist = nodelist
        self.key = key

    def render(self, context) -> str:
        return remember(
            self.key.resolve(context), context, lambda: self.nodelist.render(context)
        )


@register.tag
def memo(parser, token):
    """Render the enclosed fragment once per key: `{% memo key %}…{% endmemo %}`.

    An empty key renders it every time. The key must cover every value the
    fragment depends on (backoffice.fragments builds such keys).
    """
    bits = token.split_contents()
    if len(bits) != 2:
        raise template.TemplateSyntaxError("usage: {% memo key %}…{% endmemo %}")
    nodelist = parser.parse(("endmemo",))
    parser.delete_first_token()
    return MemoNode(nodelist, parser.compile_filter(bits[1]))
