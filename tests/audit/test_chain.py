"""The audit log's hash chain: appends, verification, tampering, retention, the trigger.

Runs on SQLite and on PostgreSQL (DATABASE_URL); the trigger and the
concurrent appends are PostgreSQL's.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone

from audit import chain, log
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL feature"
)


def fill(count: int = 5) -> list[AuditEntry]:
    for number in range(count):
        log.record(
            log.ADMIN_CHANGE,
            actor="alice",
            target=("payments.plan", number),
            detail={"fields": ["price"]},
        )
    return list(AuditEntry.objects.order_by("seq"))


def raw(sql: str, params=()) -> None:
    """Run SQL behind the application's back (the PostgreSQL trigger switched off)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditentry DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditentry ENABLE TRIGGER USER")


def verify_fails() -> str:
    with pytest.raises(CommandError) as caught:
        call_command("audit_verify", "--no-progress", stdout=StringIO())
    return str(caught.value)


def test_entries_chain_each_to_the_one_before():
    entries = fill(3)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == chain.GENESIS
    assert entries[1].prev_hash == entries[0].hash
    assert entries[2].prev_hash == entries[1].hash
    assert all(chain.entry_hash(e) == e.hash for e in entries)


def test_record_keeps_the_actor_as_text_and_the_target_as_a_reference(
    django_user_model, rf
):
    user = django_user_model.objects.create_user("op", "op@example.com", "x")
    request = rf.get("/", REMOTE_ADDR="203.0.113.9")
    request.user = user
    log.record(log.MFA_RESET, request=request, target=user, reason="lost phone")
    entry = AuditEntry.objects.get()
    assert (entry.actor_username, entry.actor_user_id) == ("op", user.pk)
    assert (entry.target_model, entry.target_id) == ("auth.user", str(user.pk))
    assert entry.ip == "203.0.113.9"
    assert entry.reason == "lost phone"
    user_id = user.pk
    user.delete()
    entry.refresh_from_db()
    assert entry.actor_display == f"op (#{user_id})"


def test_the_client_address_honours_trusted_proxies(settings, rf):
    settings.TRUSTED_PROXY_COUNT = 1
    request = rf.get(
        "/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.7"
    )
    log.record(log.LOGIN_FAILED, actor="mallory", request=request)
    assert AuditEntry.objects.get().ip == "198.51.100.7"


def test_verify_passes_on_a_fresh_chain():
    fill(4)
    out = StringIO()
    call_command("audit_verify", "--no-progress", stdout=out)
    assert "4 entries checked" in out.getvalue()


def test_verify_names_an_entry_changed_by_raw_sql():
    entries = fill(5)
    raw(
        "UPDATE audit_auditentry SET actor_username = %s WHERE id = %s",
        ["bob", entries[2].pk],
    )
    message = verify_fails()
    assert f"entry #3 (id {entries[2].pk}" in message
    assert "was changed" in message


def test_verify_names_the_entry_after_a_removed_one():
    entries = fill(5)
    raw("DELETE FROM audit_auditentry WHERE id = %s", [entries[1].pk])
    message = verify_fails()
    assert f"entry #3 (id {entries[2].pk}" in message
    assert "does not follow #1: the entry before it was removed" in message


def test_verify_names_an_entry_moved_out_of_order():
    entries = fill(5)
    # Swap the positions of #2 and #3 (through a free number: seq is unique).
    raw("UPDATE audit_auditentry SET seq = 100 WHERE id = %s", [entries[1].pk])
    raw("UPDATE audit_auditentry SET seq = 2 WHERE id = %s", [entries[2].pk])
    raw("UPDATE audit_auditentry SET seq = 3 WHERE id = %s", [entries[1].pk])
    message = verify_fails()
    assert f"entry #2 (id {entries[2].pk}" in message
    assert "is out of order: it was written after #3, not after #1" in message


def test_verify_notices_the_first_entries_removed():
    entries = fill(3)
    raw("DELETE FROM audit_auditentry WHERE id = %s", [entries[0].pk])
    message = verify_fails()
    assert "does not start the chain" in message


def test_retention_removes_old_entries_and_the_chain_still_verifies(settings):
    settings.AUDIT_RETENTION_DAYS = 30
    old = fill(3)
    log.record(log.LOGOUT, actor="alice")
    call_command("audit_verify", "--no-progress", stdout=StringIO())
    # 30 days after the third entry: the first three are past retention.
    now = old[2].created_at + timedelta(days=30, microseconds=1)

    pruned = chain.prune(now=now)

    assert pruned.removed == 3
    assert list(AuditEntry.objects.order_by("seq").values_list("seq", "action")) == [
        (4, log.LOGOUT),
        (5, chain.ANCHOR),
    ]
    assert pruned.anchor.detail["last_removed_hash"] == old[2].hash
    assert pruned.anchor.detail["pruned_through_seq"] == 3
    out = StringIO()
    call_command("audit_verify", "--no-progress", stdout=out)
    assert "2 entries checked" in out.getvalue()
    # A second run has nothing to remove and leaves the chain alone.
    assert chain.prune(now=now).removed == 0
    # After retention, tampering is still caught.
    raw("DELETE FROM audit_auditentry WHERE seq = 4")
    assert "does not start the chain" in verify_fails()


def test_the_scheduled_task_prunes_by_the_setting(settings):
    from payments.tasks import prune_audit_log

    settings.AUDIT_RETENTION_DAYS = 400
    fill(2)
    assert prune_audit_log() == {"removed": 0, "anchor": None}
    assert AuditEntry.objects.count() == 2


def test_retention_of_every_entry_leaves_the_anchor_alone_and_verifiable():
    fill(2)
    last = AuditEntry.objects.get(seq=2)
    pruned = chain.prune(now=timezone.now() + timedelta(days=1000))
    assert pruned.removed == 2
    anchor = AuditEntry.objects.get()
    assert (anchor.seq, anchor.prev_hash) == (3, last.hash)
    call_command("audit_verify", "--no-progress", stdout=StringIO())


def test_a_forged_anchor_is_caught():
    fill(3)
    chain.prune(now=timezone.now() + timedelta(days=1000))
    fill(1)
    anchor = AuditEntry.objects.get(action=chain.ANCHOR)
    raw(
        "UPDATE audit_auditentry SET detail = %s WHERE id = %s",
        ['{"removed": 0}', anchor.pk],
    )
    assert "was changed" in verify_fails()


@postgres_only
def test_postgres_refuses_a_plain_update_and_delete():
    entry = fill(1)[0]
    for sql in (
        "UPDATE audit_auditentry SET reason = 'edited' WHERE id = %s",
        "DELETE FROM audit_auditentry WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [entry.pk])
    entry.refresh_from_db()
    assert entry.reason == ""


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_postgres_lets_only_the_retention_flag_delete_and_never_update():
    entry = fill(1)[0]
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT set_config('audit.allow_prune', 'on', true)")
        cursor.execute(
            "UPDATE audit_auditentry SET reason = 'x' WHERE id = %s", [entry.pk]
        )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('audit.allow_prune', 'on', true)")
        cursor.execute("DELETE FROM audit_auditentry WHERE id = %s", [entry.pk])
    assert not AuditEntry.objects.exists()
    # The flag was transaction-local: the next delete is refused again.
    fill(1)
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM audit_auditentry")


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_never_fork_the_chain():
    threads, per_thread = 8, 15
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(number: int) -> None:
        try:
            barrier.wait()
            for _ in range(per_thread):
                log.record(log.LOGIN, actor=f"user{number}")
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    seqs = list(AuditEntry.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, threads * per_thread + 1))
    assert chain.verify().ok
