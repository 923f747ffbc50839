"""The guard on django-q2 schedules: only the project's own tasks may run.

django-q2's cluster imports and calls whatever dotted path a `Schedule`
names in `func` and `hook`, and passes `kwargs` to `async_task`, which reads
option keys such as `hook`, `chain` and `q_options` from them. So a schedule
is accepted only when `func` is one of the allowed tasks, `hook` is empty, and
the arguments are literals that bind to the task's own parameters. The check
runs in the admin form and before every save.

The allowed tasks are given by the caller (`payments.tasks.SCHEDULABLE_TASKS`):
tasks import services, never the other way round.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Iterable

from django.core.exceptions import ValidationError


def schedulable_tasks(*, allowed: Iterable[Callable]) -> dict[str, Callable]:
    """Key the allowed task functions by the dotted path a Schedule names."""
    return {f"{task.__module__}.{task.__qualname__}": task for task in allowed}


def schedule_validate(
    *,
    allowed: Iterable[Callable],
    func: str,
    hook: str | None = "",
    args: str | None = "",
    kwargs: str | None = "",
    intended_date_kwarg: str | None = "",
) -> None:
    """Raise ValidationError (by field) unless a schedule runs only an allowed task."""
    tasks = schedulable_tasks(allowed=allowed)
    task = tasks.get((func or "").strip())
    if task is None:
        raise ValidationError(
            {"func": f"not an allowed task; choose one of: {', '.join(sorted(tasks))}"}
        )
    if (hook or "").strip():
        raise ValidationError({"hook": "hooks are not allowed on schedules"})
    errors: dict[str, str] = {}
    positional = _literal_args(args, errors)
    named = _literal_kwargs(kwargs, errors)
    extra = (intended_date_kwarg or "").strip()
    if extra:
        named[extra] = "2026-01-01T00:00:00"
    if not errors:
        try:
            inspect.signature(task).bind(*positional, **named)
        except TypeError as exc:
            errors["kwargs" if named else "args"] = f"does not fit {func}: {exc}"
    if errors:
        raise ValidationError(errors)


def _literal_args(text: str | None, errors: dict[str, str]) -> tuple:
    if not (text or "").strip():
        return ()
    try:
        value = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        errors["args"] = "must be Python literals, e.g. 1, 'a'"
        return ()
    return value if isinstance(value, tuple) else (value,)


def _literal_kwargs(text: str | None, errors: dict[str, str]) -> dict:
    """Parse kwargs as django-q2's scheduler does: a dict, or `a=1, b=2`."""
    if not (text or "").strip():
        return {}
    try:
        value = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        try:
            call = ast.parse(f"f({text})", mode="eval").body
            value = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
            if call.args or any(k.arg is None for k in call.keywords):
                raise ValueError
        except (SyntaxError, ValueError, AttributeError):
            errors["kwargs"] = "must be literals, e.g. {'limit': 100} or limit=100"
            return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        errors["kwargs"] = "must be a dict of names to literals"
        return {}
    return dict(value)
