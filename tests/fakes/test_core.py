"""Tests of the fake server's core: faults, latency, connections, routing."""

import json
import threading
import time

import pytest
import requests

from fakeproviders.coinpayments import CoinPaymentsFake
from fakeproviders.core import FakeServerCore, Request, Route

from . import FakeProviderServer
from .clients import MPGS_AUTH, cp_call, create_tx, mpgs_url, wait_idle


@pytest.mark.parametrize("kind", ["500", "502", "503", "429"])
def test_fault_http_error_status(fake: FakeProviderServer, kind: str) -> None:
    txn_id = create_tx(fake)["txn_id"]
    fake.add_fault("cp:get_tx_info", kind)

    faulted = cp_call(fake, "get_tx_info", txid=txn_id)
    normal = cp_call(fake, "get_tx_info", txid=txn_id)

    assert faulted.status_code == int(kind)
    if kind == "429":
        assert faulted.headers["Retry-After"] == "1"
    assert normal.json()["error"] == "ok"
    assert fake.pending_faults() == []


@pytest.mark.parametrize(
    ("kind", "content_type"),
    [
        ("html", "text/html"),
        ("truncated", "application/json"),
        ("garbage", "application/json"),
    ],
)
def test_fault_unreadable_body(
    fake: FakeProviderServer, kind: str, content_type: str
) -> None:
    txn_id = create_tx(fake)["txn_id"]
    fake.add_fault("cp:get_tx_info", kind)

    faulted = cp_call(fake, "get_tx_info", txid=txn_id)

    assert faulted.status_code == 200
    assert faulted.headers["Content-Type"].startswith(content_type)
    with pytest.raises(ValueError):
        json.loads(faulted.content)
    assert cp_call(fake, "get_tx_info", txid=txn_id).json()["error"] == "ok"


def test_fault_latency_delays_then_answers(fake: FakeProviderServer) -> None:
    txn_id = create_tx(fake)["txn_id"]
    fake.add_fault("cp:get_tx_info", "latency", seconds=0.2)

    started = time.monotonic()
    response = cp_call(fake, "get_tx_info", txid=txn_id)
    elapsed = time.monotonic() - started

    assert elapsed >= 0.2
    assert response.json()["error"] == "ok"


def test_global_latency_applies_to_api_calls(fake: FakeProviderServer) -> None:
    fake.latency = 0.15

    started = time.monotonic()
    response = requests.get(mpgs_url(fake, "order/none"), auth=MPGS_AUTH, timeout=5)
    elapsed = time.monotonic() - started

    assert response.status_code == 400
    assert elapsed >= 0.15


def test_fault_timeout_trips_client_read_timeout(fake: FakeProviderServer) -> None:
    fake.add_fault("mpgs:order", "timeout", seconds=0.6)

    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(mpgs_url(fake, "order/x"), auth=MPGS_AUTH, timeout=(1, 0.2))

    assert fake.count("mpgs:order") == 1
    # Let the handler finish its sleep so later tests see an idle server.
    wait_idle(fake)


def test_fault_drop_closes_without_answer(fake: FakeProviderServer) -> None:
    fake.add_fault("mpgs:order", "drop")

    with pytest.raises(requests.exceptions.ConnectionError) as caught:
        requests.get(mpgs_url(fake, "order/x"), auth=MPGS_AUTH, timeout=5)

    assert not isinstance(caught.value, requests.exceptions.Timeout)
    after = requests.get(mpgs_url(fake, "order/x"), auth=MPGS_AUTH, timeout=5)
    assert after.status_code == 400


def test_wildcard_fault_hits_any_operation_times(fake: FakeProviderServer) -> None:
    fake.add_fault("*", "503", times=2)

    first = requests.get(mpgs_url(fake, "order/x"), auth=MPGS_AUTH, timeout=5)
    second = cp_call(fake, "get_tx_info", txid="CPNOPE")
    third = cp_call(fake, "get_tx_info", txid="CPNOPE")

    assert (first.status_code, second.status_code) == (503, 503)
    assert third.json() == {"error": "Invalid payment ID"}
    assert fake.pending_faults() == []


def test_add_fault_rejects_unknown_kind(fake: FakeProviderServer) -> None:
    with pytest.raises(ValueError):
        fake.add_fault("*", "explode")

    assert fake.pending_faults() == []


def test_max_in_flight_counts_concurrent_requests(fake: FakeProviderServer) -> None:
    fake.latency = 0.3
    workers = 8
    barrier = threading.Barrier(workers)
    statuses: list[int] = []

    def call() -> None:
        barrier.wait()
        response = requests.get(mpgs_url(fake, "order/x"), auth=MPGS_AUTH, timeout=5)
        statuses.append(response.status_code)

    threads = [threading.Thread(target=call) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [400] * workers
    assert fake.max_in_flight == workers
    assert fake.in_flight == 0


def test_keep_alive_reuses_one_connection(fake: FakeProviderServer) -> None:
    txn_id = create_tx(fake)["txn_id"]
    fake.reset_calls()

    started = time.monotonic()
    with requests.Session() as session:
        answers = [
            cp_call(fake, "get_tx_info", client=session, txid=txn_id).json()
            for _ in range(50)
        ]
    elapsed = time.monotonic() - started

    assert all(answer["error"] == "ok" for answer in answers)
    assert fake.count("cp:get_tx_info") == 50
    assert fake.connections_accepted == 1
    assert elapsed < 3


def test_stop_closes_idle_keep_alive_connections() -> None:
    server = FakeProviderServer().start()
    session = requests.Session()
    url = f"{server.url}/static/checkout/checkout.min.js"
    assert session.get(url, timeout=5).status_code == 200

    started = time.monotonic()
    server.stop()
    stopped_in = time.monotonic() - started

    assert stopped_in < 2
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, timeout=1)
    session.close()


# --- composition and routing -------------------------------------------------


def test_every_provider_has_gateway_settings_pointing_at_the_fake(
    fake: FakeProviderServer,
) -> None:
    from gateways.registry import ADAPTERS

    settings = fake.gateway_settings()

    # Every registered provider but the built-in sandbox has a fake.
    assert set(settings) == set(ADAPTERS) - {"sandbox"}
    assert settings["coinpayments"]["api_url"] == f"{fake.url}/api.php"
    assert settings["mpgs"]["api_base_url"] == fake.url
    assert settings["stripe"]["api_base"] == fake.url
    assert settings["hyperpay"]["api_base_url"] == fake.url


def test_unrouted_paths_are_404_and_counted_as_unknown(
    fake: FakeProviderServer,
) -> None:
    # Inside a provider's prefix but not one of its routes, and outside any prefix.
    inside = requests.get(f"{fake.url}/cp/qrgen/CPX.png", timeout=5)
    outside = requests.get(f"{fake.url}/nowhere", timeout=5)
    wrong_method = requests.post(
        f"{fake.url}/static/checkout/checkout.min.js", timeout=5
    )

    assert [r.status_code for r in (inside, outside, wrong_method)] == [404] * 3
    assert fake.count("unknown") == 3


def test_a_provider_fake_serves_alone() -> None:
    with CoinPaymentsFake() as server:
        txn_id = create_tx(server)["txn_id"]
        mpgs = requests.get(mpgs_url(server, "order/x"), auth=MPGS_AUTH, timeout=5)

        assert server.cp_transaction(txn_id)["status"] == 0
        assert mpgs.status_code == 404
        assert server.count("unknown") == 1
        assert list(server.gateway_settings()) == ["coinpayments"]


def test_two_providers_cannot_claim_one_prefix() -> None:
    class Clashing(FakeServerCore):
        ROUTES = {"/cp/": "_clashing_route"}

        def _clashing_route(self, req: Request) -> Route | None:
            return None

    class Both(CoinPaymentsFake, Clashing):
        pass

    with pytest.raises(TypeError, match="'/cp/'"):
        Both()


def test_the_records_outlive_a_restart_on_a_fixed_port(tmp_path):
    """What the demo relies on: save_state() then load_state() on the same port."""
    state = str(tmp_path / "fake.state")
    with FakeProviderServer() as first:
        txn_id = create_tx(first, invoice="INV-KEEP", custom="c-1")["txn_id"]
        first.cp_set_status(txn_id, 100)
        port = int(first.url.rsplit(":", 1)[1])
        first.save_state(state)
    again = FakeProviderServer(port=port)
    assert again.load_state(state) is True
    with again:
        assert again.url == f"http://127.0.0.1:{port}"
        assert again.cp_transaction(txn_id)["status"] == 100
        answer = cp_call(again, "get_tx_info", txid=txn_id).json()
        assert answer["result"]["status"] == 100
    assert FakeProviderServer().load_state(str(tmp_path / "missing")) is False
