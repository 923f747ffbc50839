"""`make run`'s entry point (`manage.py devserver`) end to end, over HTTP only.

The demo starts the fake provider server beside the web server and the job
cluster and points every gateway at it: a sandbox, a CoinPayments, an MPGS, a
HyperPay and a Stripe payment are paid through the providers' own pages,
refreshed and refunded in the admin as the demo admin, a reconciliation run
asks the fake about the open ones with 0 errors, and one SIGINT stops all three
processes.
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "demo-reconcile-token-for-the-test"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def demo_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "Q_BROKER_URL", "DEMO_PROVIDERS_URL"}
        and not k.startswith(("COINPAYMENTS_", "MPGS_", "HYPERPAY_", "STRIPE_"))
    }
    return {
        **clean,
        "DJANGO_SETTINGS_MODULE": "backoffice.settings",
        "DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "RECONCILE_API_TOKEN": TOKEN,
        "DEMO_PROVIDERS_STATE": str(tmp_path / "demo-providers.state"),
        **extra,
    }


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def wait_for(base: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{base}/health/", timeout=5).status_code < 500:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise AssertionError(log.read_text())
        time.sleep(0.3)


def processes() -> dict[int, tuple[int, str]]:
    """Return pid → (parent pid, command line) of every process (Linux /proc)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after the last ")".
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), cmdline)
    return table


def descendants(pid: int) -> dict[int, str]:
    """Every live process below `pid` (its children lead their own sessions)."""
    table = processes()
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, cmdline) in table.items():
            if ppid == parent and child not in found:
                found[child] = cmdline
                frontier.append(child)
    return found


def alive(pids) -> list[int]:
    table = processes()
    return [pid for pid in pids if pid in table]


def start_devserver(env, port: int, providers_port: int, log: Path):
    with log.open("w") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "devserver",
                "--port",
                str(port),
                "--providers-port",
                str(providers_port),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(server: subprocess.Popen, log: Path) -> None:
    """Ctrl-C the devserver; check that every process it started is gone."""
    children = descendants(server.pid)
    server.send_signal(signal.SIGINT)
    assert server.wait(timeout=30) == 0, log.read_text()
    deadline = time.monotonic() + 15
    while alive(children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive(children) == [], {pid: children[pid] for pid in alive(children)}


@pytest.fixture
def devserver(tmp_path):
    """Run `manage.py devserver` as `make run` does, on free ports."""
    env = demo_env(tmp_path)
    manage(env, "migrate", "--no-input", "-v", "0")
    manage(env, "createcachetable")
    port, providers_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    # As make run: seeded through the providers the devserver then serves.
    seeded = manage(
        env,
        *("seed_demo", "--payments", "40", "--site-url", base),
        *("--providers-port", str(providers_port)),
    )
    assert "seeded 40 demo payments" in seeded
    log = tmp_path / "devserver.log"
    server = start_devserver(env, port, providers_port, log)
    try:
        wait_for(base, server, log)
        yield server, base, f"http://127.0.0.1:{providers_port}", log
    finally:
        if server.poll() is None:
            for pid in descendants(server.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            server.kill()
            server.wait(timeout=10)


def create(http: requests.Session, base: str, gateway: str, **extra) -> dict:
    response = http.post(
        f"{base}/api/payments/",
        json={
            "plan": "eu-5gb-30d",
            "payment_gateway": gateway,
            "email": f"newcomer.{gateway}@example.com",
            **extra,
        },
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response.json()


def status(http: requests.Session, base: str, ref_id: str) -> str:
    response = http.get(f"{base}/api/payments/status/{ref_id}/", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["status"]


def csrf(page: requests.Response) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]


def pay_sandbox(http, created) -> requests.Response:
    page = http.get(created["payment_url"], timeout=30)
    return http.post(
        created["payment_url"],
        data={"csrfmiddlewaretoken": csrf(page), "choice": "pay"},
        headers={"Referer": created["payment_url"]},
        timeout=30,
    )


def pay_coinpayments(http, created, providers: str) -> requests.Response:
    assert created["payment_url"].startswith(f"{providers}/cp/checkout/")
    page = http.get(created["payment_url"], timeout=30)
    assert 'id="simulated-provider"' in page.text
    return http.post(created["payment_url"], data={"action": "pay"}, timeout=30)


def pay_mpgs(http, created, providers: str) -> requests.Response:
    page = http.get(created["payment_url"], timeout=30)
    assert 'id="test-mode"' in page.text and "simulated" in page.text
    assert f"{providers}/static/checkout/checkout.min.js" in page.text
    session = re.search(r"SESSION[0-9A-Za-z_-]+", page.text)[0]
    hosted = f"{providers}/checkout/pay/{session}"
    assert 'id="simulated-provider"' in http.get(hosted, timeout=30).text
    return http.post(hosted, data={"action": "pay"}, timeout=30)


def pay_hyperpay(http, created, base: str, providers: str) -> requests.Response:
    page = http.get(created["payment_url"], timeout=30)
    assert 'id="test-mode"' in page.text and "simulated" in page.text
    script = re.search(r"checkoutId=([0-9A-Za-z._-]+)", page.text)
    assert script, page.text
    action = re.search(r'<form id="payment-form" action="([^"]+)"', page.text)[1]
    return http.post(
        f"{providers}/hyperpay/pay/{script[1]}",
        data={"action": "pay", "shopperResultUrl": base + html.unescape(action)},
        timeout=30,
    )


def pay_stripe(http, created, providers: str) -> requests.Response:
    assert created["payment_url"].startswith(f"{providers}/c/pay/")
    page = http.get(created["payment_url"], timeout=30)
    assert 'id="simulated-provider"' in page.text
    return http.post(created["payment_url"], data={"action": "pay"}, timeout=30)


def admin_login(base: str) -> requests.Session:
    http = requests.Session()
    page = http.get(f"{base}/admin/login/", timeout=30)
    done = http.post(
        f"{base}/admin/login/?next=/admin/",
        data={
            "csrfmiddlewaretoken": csrf(page),
            "username": "admin",
            "password": "demo-admin-2026",
            "next": "/admin/",
        },
        headers={"Referer": f"{base}/admin/login/"},
        timeout=30,
    )
    assert done.url.rstrip("/").endswith("/admin"), done.text[:2000]
    return http


def payment_pk(admin: requests.Session, base: str, ref_id: str) -> str:
    found = admin.get(
        f"{base}/admin/payments/payment/", params={"q": ref_id}, timeout=30
    )
    return re.search(r"/admin/payments/payment/(\d+)/change/", found.text)[1]


def admin_action(admin, base, pk: str, name: str, **data) -> requests.Response:
    url = f"{base}/admin/payments/payment/{pk}/{name}/"
    form = admin.get(url, timeout=30)
    assert form.status_code == 200, form.text[:2000]
    return admin.post(
        url,
        data={"csrfmiddlewaretoken": csrf(form), "_form_submitted": "True", **data},
        headers={"Referer": url},
        timeout=60,
    )


def messages_of(page: requests.Response) -> str:
    return " ".join(html.unescape(page.text).split())


def last_run(admin, base: str) -> dict[str, str]:
    runs = admin.get(f"{base}/admin/payments/reconciliationrun/", timeout=30)
    row = re.search(r"<tbody.*?<tr[^>]*>(.*?)</tr>", runs.text, re.S)
    assert row, runs.text[:3000]
    cells = [
        " ".join(re.sub(r"<[^>]+>", " ", cell).split())
        for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row[1], re.S)
    ]
    names = ("started", "trigger", "checked", "changed", "errors", "expired")
    return dict(zip((*names, "duration", "finished"), cells, strict=False))


def test_make_run_demo_pays_refreshes_refunds_and_reconciles_every_gateway(
    devserver,
):
    server, base, providers, log = devserver
    assert "records restored" in log.read_text()
    http = requests.Session()
    banner = http.get(f"{base}/checkout/", timeout=30).text
    assert "simulated" in banner and 'id="test-mode"' in banner

    # Open payments the reconciliation run asks the fake about at the end.
    left_open = [create(http, base, code) for code in ("coinpayments", "mpgs")]
    opened_at = time.monotonic()

    paid = {}
    for code, pay in (
        ("sandbox", lambda c: pay_sandbox(http, c)),
        ("coinpayments", lambda c: pay_coinpayments(http, c, providers)),
        ("mpgs", lambda c: pay_mpgs(http, c, providers)),
        ("hyperpay", lambda c: pay_hyperpay(http, c, base, providers)),
        ("stripe", lambda c: pay_stripe(http, c, providers)),
    ):
        created = create(http, base, code)
        back = pay(created)
        assert f"/checkout/return/{created['ref_id']}/" in back.url, (code, back.text)
        assert "Payment received" in back.text, (code, back.text[:2000])
        # The provider's IPN/notification/event reached the web server.
        assert status(http, base, created["ref_id"]) == "COMPLETED", code
        paid[code] = created

    admin = admin_login(base)
    admin_page = admin.get(f"{base}/admin/", timeout=30).text
    assert "simulated providers" in admin_page
    for code, created in paid.items():
        pk = payment_pk(admin, base, created["ref_id"])
        refreshed = messages_of(admin_action(admin, base, pk, "refresh_from_gateway"))
        assert "Refreshed: no change, the payment is Completed" in refreshed, code
        assert "is not set" not in refreshed
    # Seeded payments are known to the providers too (their records were kept).
    ours = {payment_pk(admin, base, c["ref_id"]) for c in [*left_open, *paid.values()]}
    listing = admin.get(f"{base}/admin/payments/payment/", timeout=30).text
    listed = dict.fromkeys(
        re.findall(r"/admin/payments/payment/(\d+)/change/", listing)
    )
    seeded = [pk for pk in listed if pk not in ours][:4]
    assert len(seeded) == 4
    for pk in seeded:
        refreshed = messages_of(admin_action(admin, base, pk, "refresh_from_gateway"))
        assert "Refreshed:" in refreshed, refreshed[-2000:]
    for code in ("mpgs", "hyperpay", "stripe"):
        pk = payment_pk(admin, base, paid[code]["ref_id"])
        refunded = admin_action(
            admin, base, pk, "refund", amount="24.00", reason="demo walk-through"
        )
        assert refunded.status_code == 200
        assert status(http, base, paid[code]["ref_id"]) == "REFUNDED", (
            code,
            messages_of(refunded)[-3000:],
        )

    # A new payment is first checked a minute after its creation.
    time.sleep(max(0.0, 62 - (time.monotonic() - opened_at)))
    queued = requests.post(
        f"{base}/api/payments/update-pending/",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    assert queued.status_code == 202, queued.text
    deadline = time.monotonic() + 90
    while (run := last_run(admin, base))["trigger"] != "api" or run["finished"] in (
        "",
        "-",
    ):
        assert time.monotonic() < deadline, run
        time.sleep(1)
    # Ours and the seed's open ones (2 recent, 1 waiting for confirmations).
    assert int(run["checked"]) >= len(left_open) + 3, run
    assert run["errors"] == "0", run
    for created in left_open:
        assert status(http, base, created["ref_id"]) == "PENDING"

    children = descendants(server.pid)
    names = " ".join(children.values())
    for part in ("fakeproviders", "runserver", "qcluster"):
        assert part in names, children
    state = log.parent / "demo-providers.state"
    seeded_state = state.stat().st_mtime_ns
    stop(server, log)
    assert "stopped the simulated providers" in log.read_text()
    # The fake wrote its records on the way out, for the next make run.
    assert state.stat().st_mtime_ns > seeded_state


def test_with_debug_off_nothing_of_the_demo_starts(tmp_path, collected_static):
    from tests.conftest import production_env

    env = production_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'prod.sqlite3'}",
        STATIC_ROOT=str(collected_static),
        DEMO_PROVIDERS_STATE=str(tmp_path / "demo-providers.state"),
    )
    manage(env, "migrate", "--no-input", "-v", "0")
    manage(env, "createcachetable")
    port, providers_port = free_port(), free_port()
    log = tmp_path / "devserver.log"
    server = start_devserver(env, port, providers_port, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base, server, log)
        assert "DEBUG is off: no simulated providers" in log.read_text()
        children = descendants(server.pid)
        assert not any("fakeproviders" in line for line in children.values())
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", providers_port), timeout=2)
        checkout = requests.get(f"{base}/checkout/", timeout=30).text
        assert "simulated" not in checkout
        stop(server, log)
        assert "stopped the web server, the job cluster" in log.read_text()
        assert not (tmp_path / "demo-providers.state").exists()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
