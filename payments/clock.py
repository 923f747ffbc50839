"""The time services read: the real time, or the seed's controlled clock.

Services call `now()` wherever they stamp a record (events, payments,
refunds, deliveries, runs), and the models' creation/update stamps do too
(`ClockDateTimeField`). Outside `set_to()` this is `timezone.now()`. The
demo seed (`seed_demo`) builds a history of weeks in seconds by running the
real services under `set_to(moment)`: every stamp is then that moment, and a
provider's own instants (a checkout's expiry, computed from the provider's
real clock) are moved into the same frame by `from_provider()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta

from django.db import models
from django.utils import timezone

# The controlled clock's distance from the real one; None: the real clock.
_offset: ContextVar[timedelta | None] = ContextVar("payments_clock", default=None)


def now() -> datetime:
    """Return the current time: the real one, or the controlled clock's."""
    offset = _offset.get()
    real = timezone.now()
    return real if offset is None else real + offset


def from_provider(moment: datetime | None) -> datetime | None:
    """Move an instant a provider computed on the real clock into ours."""
    offset = _offset.get()
    if moment is None or offset is None:
        return moment
    return moment + offset


@contextmanager
def set_to(moment: datetime) -> Iterator[None]:
    """Run the block as if it were `moment` (time keeps running from there)."""
    token = _offset.set(moment - timezone.now())
    try:
        yield
    finally:
        _offset.reset(token)


class ClockDateTimeField(models.DateTimeField):
    """A DateTimeField whose auto_now/auto_now_add stamps read `now()`.

    It deconstructs as a plain DateTimeField: the column, the migrations and
    the admin are those of a DateTimeField; only the stamp's source differs.
    """

    def pre_save(self, model_instance, add):
        if self.auto_now or (self.auto_now_add and add):
            value = now()
            setattr(model_instance, self.attname, value)
            return value
        return super().pre_save(model_instance, add)

    def deconstruct(self):
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.DateTimeField", args, kwargs
