"""The hash chain of the audit log: append, verify, prune.

Each entry's hash is SHA-256 over its content and the hash of the entry
before it (`prev_hash`; the first entry follows GENESIS). Appends are
serialised — a transaction-scoped advisory lock on PostgreSQL, SQLite's
write lock (IMMEDIATE transactions) elsewhere — so two appends cannot both
follow the same entry. Retention deletes the oldest entries and appends an
ANCHOR entry naming the last one removed, so verification starts from there.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .models import AuditEntry

GENESIS = "0" * 64
ANCHOR = "audit.anchor"
# pg_advisory_xact_lock key: "audit" in ASCII.
_LOCK_KEY = 0x6175646974
# The PostgreSQL setting the trigger reads (audit/migrations/0001_initial.py).
PRUNE_FLAG = "audit.allow_prune"


def canonical_detail(detail: dict[str, Any] | None) -> dict[str, Any]:
    """Return `detail` as it reads back from a JSON column (plain JSON types)."""
    return json.loads(json.dumps(detail or {}, default=str))


def normalised_ip(ip: str | None) -> str | None:
    """Return the address as the database gives it back, or None if it is none."""
    if not ip:
        return None
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return None


def entry_hash(entry: AuditEntry) -> str:
    """Hash an entry's content and the hash of the entry before it."""
    created = entry.created_at.astimezone(UTC).isoformat(timespec="microseconds")
    content = [
        created,
        entry.actor_username,
        entry.actor_user_id,
        entry.ip or "",
        entry.action,
        entry.target_model,
        entry.target_id,
        entry.reason,
        entry.detail,
        entry.prev_hash,
    ]
    text = json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])


def append(
    *,
    action: str,
    actor_username: str = "",
    actor_user_id: int | None = None,
    ip: str | None = None,
    target_model: str = "",
    target_id: str = "",
    reason: str = "",
    detail: dict[str, Any] | None = None,
    after: tuple[int, str] | None = None,
) -> AuditEntry:
    """Append one entry at the head of the chain and return it.

    `after` is the (seq, hash) to follow when the table is empty (retention
    removed every entry); otherwise the newest entry is followed.
    """
    with transaction.atomic():
        _lock()
        last = AuditEntry.objects.order_by("-seq").only("seq", "hash").first()
        if last is not None:
            seq, prev = last.seq + 1, last.hash
        elif after is not None:
            seq, prev = after[0] + 1, after[1]
        else:
            seq, prev = 1, GENESIS
        entry = AuditEntry(
            seq=seq,
            created_at=timezone.now(),
            actor_username=(actor_username or "")[:150],
            actor_user_id=actor_user_id,
            ip=normalised_ip(ip),
            action=action[:64],
            target_model=(target_model or "")[:100],
            target_id=str(target_id if target_id is not None else "")[:64],
            reason=reason or "",
            detail=canonical_detail(detail),
            prev_hash=prev,
        )
        entry.hash = entry_hash(entry)
        entry.save(force_insert=True)
    return entry


@dataclass(frozen=True)
class Verification:
    """What walking the chain found: the first broken entry, if any."""

    checked: int
    head_seq: int | None
    head_hash: str | None
    broken: AuditEntry | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.broken is None


def describe(entry: AuditEntry) -> str:
    """Name an entry for a report: its position, id, action and time."""
    when = entry.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"entry #{entry.seq} (id {entry.pk}, {entry.action}, {when})"


def verify(*, progress: Callable[[int], None] | None = None) -> Verification:
    """Walk the chain in order and report the first entry changed, removed or moved."""
    anchor = AuditEntry.objects.filter(action=ANCHOR).order_by("-seq").first()
    expected_prev = GENESIS
    if anchor is not None:
        expected_prev = str(anchor.detail.get("last_removed_hash", ""))
    checked = 0
    previous: AuditEntry | None = None
    for entry in AuditEntry.objects.order_by("seq").iterator(chunk_size=2000):
        if entry_hash(entry) != entry.hash:
            return _broken(
                checked, entry, "was changed: its content does not match its hash"
            )
        if entry.prev_hash != expected_prev:
            return _broken(checked, entry, _link_problem(entry, previous))
        expected_prev = entry.hash
        previous = entry
        checked += 1
        if progress is not None:
            progress(1)
    return Verification(
        checked=checked,
        head_seq=previous.seq if previous else None,
        head_hash=previous.hash if previous else None,
    )


def _link_problem(entry: AuditEntry, previous: AuditEntry | None) -> str:
    real = AuditEntry.objects.filter(hash=entry.prev_hash).first()
    if real is not None:
        return (
            f"is out of order: it was written after #{real.seq}, "
            f"not after {f'#{previous.seq}' if previous else 'the start'}"
        )
    if previous is None:
        return "does not start the chain: the entry before it was removed"
    return f"does not follow #{previous.seq}: the entry before it was removed"


def _broken(checked: int, entry: AuditEntry, problem: str) -> Verification:
    return Verification(
        checked=checked,
        head_seq=None,
        head_hash=None,
        broken=entry,
        problem=f"{describe(entry)} {problem}",
    )


@dataclass(frozen=True)
class Pruned:
    removed: int
    anchor: AuditEntry | None


def prune(*, now: datetime | None = None, days: int | None = None) -> Pruned:
    """Delete entries older than `days` (AUDIT_RETENTION_DAYS); anchor the chain.

    A prefix of the chain goes: every entry up to the newest one older than
    the cut-off. An ANCHOR entry then carries the hash of the last removed one.
    """
    days = settings.AUDIT_RETENTION_DAYS if days is None else days
    cutoff = (now or timezone.now()) - timedelta(days=days)
    with transaction.atomic():
        _lock()
        last_old = (
            AuditEntry.objects.filter(created_at__lt=cutoff).order_by("-seq").first()
        )
        if last_old is None:
            return Pruned(removed=0, anchor=None)
        _allow_prune(True)
        removed, _ = AuditEntry.objects.filter(seq__lte=last_old.seq).delete()
        _allow_prune(False)
        anchor = append(
            action=ANCHOR,
            reason=f"retention: entries older than {days} days removed",
            detail={
                "removed": removed,
                "pruned_through_seq": last_old.seq,
                "last_removed_hash": last_old.hash,
            },
            after=(last_old.seq, last_old.hash),
        )
    return Pruned(removed=removed, anchor=anchor)


def _allow_prune(on: bool) -> None:
    """Set the transaction-local flag the PostgreSQL trigger lets deletes through on."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config(%s, %s, true)", [PRUNE_FLAG, "on" if on else "off"]
        )
