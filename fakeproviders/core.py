"""The fake provider server's core: HTTP serving, routing, faults and counting.

Provider fakes (`coinpayments.py`, `mpgs.py`, …) subclass `FakeServerCore`,
declare the path prefixes they answer in `ROUTES`, and are composed into
`FakeProviderServer` in `server.py`. Everything here is provider-neutral: the
threaded loopback server, the request handler, fault injection, call counting,
connection tracking and the small reply/parsing helpers the providers share.
See README.md in this package for how to add a provider.
"""

import base64
import contextlib
import copy
import html
import json
import os
import pickle
import secrets
import socket
import socketserver
import string
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

FAULT_KINDS = frozenset(
    {
        "latency",
        "timeout",
        "drop",
        "500",
        "502",
        "503",
        "429",
        "html",
        "truncated",
        "garbage",
    }
)

_UPPER_ALNUM = string.ascii_uppercase + string.digits
_MAX_BODY = 1_000_000
# ISO 4217 currencies whose minor unit is not cents; everything else gets 2
# places. The fake's own copy (a test checks it against gateways.money).
MINOR_UNITS = {
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(
        (
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ),  # fmt: skip
        0,
    ),
}

_TRUNCATED_JSON = b'{"error": "ok", "result": {"amount": "0.0016", "status": '
_GARBAGE = b"\x00\x9f\x92\x96\xff\xfe<<not json>>\x1f\x8b\x08"
_HTML_ERROR = (
    b"<!doctype html><html><head><title>503 Service Unavailable</title></head>"
    b"<body><h1>Service Unavailable</h1><p>The server is temporarily unable to "
    b"service your request. Please try again later.</p></body></html>"
)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: Message
    body: bytes


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Fault:
    operation: str
    kind: str
    times: int
    seconds: float


# (operation, counts as an API call, handler): what a provider's router returns.
# The operation names the request for count(), add_fault() and .calls.
Route = tuple[str, bool, Callable[[], Reply]]


class FakeServerCore:
    """Serve the routes of every provider fake mixed in, on 127.0.0.1.

    Subclasses add a provider: they declare `ROUTES` (path prefix → name of a
    router method returning a `Route` or None), take their own keyword options
    in a cooperative `__init__`, and extend `gateway_settings()` and, for
    provider-specific counters, `reset_calls()`.
    """

    # Path prefix → router method name; collected from every class in the MRO.
    ROUTES: ClassVar[Mapping[str, str]] = {}
    # Attributes holding provider-side records (transactions, orders, …) that
    # save_state()/load_state() keep across restarts of the demo; collected
    # from every class in the MRO like ROUTES.
    STATE: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, port: int = 0) -> None:
        # 0: an ephemeral port (tests); the demo asks for a fixed one.
        self.port = port
        # Tunables tests may set directly.
        self.latency: float = 0.0
        # Read timeout for the IPNs/notifications the fake POSTs to us.
        self.notify_timeout: float = 10.0
        self.verbose: bool = False

        # Observations; guarded by _lock like all other state.
        self.calls: list[tuple[str, str]] = []
        self._blackholes: list[socket.socket] = []
        self.max_in_flight = 0
        self.connections_accepted = 0
        self.errors: list[str] = []

        # Re-entrant so control methods can compose without a second lock.
        self._lock = threading.RLock()
        self._in_flight = 0
        self._faults: list[_Fault] = []
        self._routes = self._route_table()

        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None
        self._stopping = threading.Event()

    def _route_table(self) -> list[tuple[str, Callable[[Request], Route | None]]]:
        """Collect every provider's ROUTES, longest prefix first."""
        table: dict[str, Callable[[Request], Route | None]] = {}
        for cls in type(self).__mro__:
            for prefix, router in vars(cls).get("ROUTES", {}).items():
                if prefix in table:
                    raise TypeError(f"two providers claim the path prefix {prefix!r}")
                table[prefix] = getattr(self, router)
        return sorted(table.items(), key=lambda item: len(item[0]), reverse=True)

    # --- lifecycle ----------------------------------------------------------

    def start(self) -> Self:
        """Bind an ephemeral loopback port and serve from a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        self._stopping.clear()
        httpd = _HTTPServer(self, self.port)
        self._httpd = httpd
        self._url = f"http://127.0.0.1:{httpd.server_port}"
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-provider-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        # Wakes handlers sleeping in latency/timeout faults.
        self._stopping.set()
        httpd.shutdown()
        # Idle keep-alive handlers block in recv(); closing their sockets ends them.
        httpd.close_open_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None
        self._url = None
        for sock in self._blackholes:
            sock.close()
        self._blackholes.clear()

    def _state_names(self) -> list[str]:
        return [
            name for cls in type(self).__mro__ for name in vars(cls).get("STATE", ())
        ]

    def save_state(self, path: str) -> None:
        """Write the provider-side records to `path` (the demo keeps them across runs)."""
        with self._lock:
            data = pickle.dumps(
                {name: getattr(self, name) for name in self._state_names()}
            )
        partial = f"{path}.partial"
        with open(partial, "wb") as out:
            out.write(data)
        os.replace(partial, path)

    def load_state(self, path: str) -> bool:
        """Restore what save_state() wrote, if `path` exists; say whether it did.

        Only for a file this fake wrote itself (pickle): the demo's own `var/`.
        """
        try:
            with open(path, "rb") as source:
                saved = pickle.load(source)  # noqa: S301 - our own file, see above
        except FileNotFoundError:
            return False
        with self._lock:
            for name in self._state_names():
                if name in saved:
                    setattr(self, name, saved[name])
        return True

    def blackhole_url(self) -> str:
        """Return a loopback URL whose connections never complete (connect timeout).

        A listening socket with a backlog of one, already filled and never
        accepted: the kernel drops further SYNs, so clients time out while
        connecting, as with a provider host that is unreachable.
        """
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        self._blackholes.append(listener)
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            self._blackholes.append(filler)
        time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    def __enter__(self) -> Self:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Return the base URL, e.g. ``http://127.0.0.1:54321``."""
        if self._url is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return self._url

    # --- observation and fault injection --------------------------------------

    @property
    def in_flight(self) -> int:
        """Return how many requests are being handled right now."""
        with self._lock:
            return self._in_flight

    def gateway_settings(self) -> dict[str, dict[str, object]]:
        """Return the GATEWAY_SETTINGS entries that point the adapters at this fake."""
        # Each provider adds its own entry; the core serves none itself.
        return {}

    def count(self, operation: str) -> int:
        """Return how many requests for `operation` arrived."""
        with self._lock:
            return sum(1 for op, _ in self.calls if op == operation)

    def reset_calls(self) -> None:
        """Forget recorded calls and restart the concurrency/connection counters."""
        with self._lock:
            self.calls.clear()
            self.max_in_flight = self._in_flight
            self.connections_accepted = 0

    def add_fault(
        self, operation: str, kind: str, *, times: int = 1, seconds: float = 0.0
    ) -> None:
        """Make the next `times` requests for `operation` (or "*") fail as `kind`."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {FAULT_KINDS}")
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(_Fault(operation, kind, times, seconds))

    def clear_faults(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> list[tuple[str, str, int]]:
        """Return pending faults as (operation, kind, times left)."""
        with self._lock:
            return [(f.operation, f.kind, f.times) for f in self._faults]

    # --- request plumbing (called from handler threads) ----------------------

    def _connection_accepted(self) -> None:
        with self._lock:
            self.connections_accepted += 1

    def _begin(self, operation: str, path: str) -> None:
        with self._lock:
            self.calls.append((operation, path))
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _end(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _take_fault(self, operation: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.operation in (operation, "*"):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return _Fault(fault.operation, fault.kind, 1, fault.seconds)
        return None

    def _pause(self, seconds: float) -> None:
        # An event wait rather than sleep() so stop() is never held up by a fault.
        if seconds > 0:
            self._stopping.wait(seconds)

    def _record_error(self) -> None:
        text = traceback.format_exc()
        with self._lock:
            self.errors.append(text)
        print(text, file=sys.stderr)

    def _route(self, req: Request) -> Route:
        """Return (operation, counts as API call, handler) for a request."""
        for prefix, router in self._routes:
            if req.path.startswith(prefix) and (route := router(req)) is not None:
                return route
        return "unknown", False, lambda: Reply(404, b"Not Found")


class _Handler(BaseHTTPRequestHandler):
    """Translate HTTP requests into calls on the fake."""

    protocol_version = "HTTP/1.1"
    server: "_HTTPServer"

    def do_GET(self) -> None:
        """Handle a GET."""
        self._dispatch()

    def do_POST(self) -> None:
        """Handle a POST."""
        self._dispatch()

    def do_PUT(self) -> None:
        """Handle a PUT."""
        self._dispatch()

    def do_DELETE(self) -> None:
        """Handle a DELETE."""
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet unless the fake is verbose."""
        if self.server.fake.verbose:
            super().log_message(format, *args)

    def _dispatch(self) -> None:
        fake = self.server.fake
        body = self._read_body()
        if body is None:
            return
        parts = urlsplit(self.path)
        req = Request(self.command, parts.path, parts.query, self.headers, body)
        operation, is_api, handler = fake._route(req)
        fake._begin(operation, self.path)
        try:
            fault = fake._take_fault(operation)
            if is_api:
                fake._pause(fake.latency)
            if fault is not None and fault.kind == "latency":
                fake._pause(fault.seconds)
                fault = None
            if fault is not None:
                reply = self._fault_reply(fault)
            else:
                try:
                    reply = handler()
                except Exception:
                    fake._record_error()
                    reply = Reply(500, b"fake server bug; see .errors")
        finally:
            # Leave before replying so in_flight is exact once the client has it.
            fake._end()
        if reply is None:
            # No reply at all: the server closes the socket when we return.
            self.close_connection = True
        else:
            self._send(reply)

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding"):
            # Neither provider accepts chunked uploads, and our client never sends them.
            self.close_connection = True
            self._send(Reply(411, b"Length Required"))
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self.close_connection = True
            self._send(Reply(400, b"Bad Content-Length"))
            return None
        return self.rfile.read(length) if length else b""

    def _fault_reply(self, fault: _Fault) -> Reply | None:
        """Return the broken reply for a fault, or None to answer nothing."""
        kind = fault.kind
        if kind == "timeout":
            self.server.fake._pause(fault.seconds)
            return None
        if kind == "drop":
            return None
        if kind in ("500", "502", "503", "429"):
            status = HTTPStatus(int(kind))
            headers = {"Retry-After": "1"} if kind == "429" else {}
            text = f"{status.value} {status.phrase}".encode()
            return Reply(status.value, text, headers=headers)
        if kind == "html":
            return Reply(200, _HTML_ERROR, "text/html; charset=utf-8")
        if kind == "truncated":
            return Reply(200, _TRUNCATED_JSON, "application/json")
        return Reply(200, _GARBAGE, "application/json")

    def _send(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
        except OSError:
            # The client went away (e.g. it timed out first); nothing left to do.
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    """Threaded loopback server that tracks its connections."""

    daemon_threads = True
    # Joining handler threads on close would hang on idle keep-alive connections.
    block_on_close = False
    # Benchmarks open many connections at once; the default backlog of 5 drops SYNs.
    request_queue_size = 128

    def __init__(self, fake: FakeServerCore, port: int = 0) -> None:
        self.fake = fake
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse-DNS lookup of the address."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept a connection with Nagle disabled."""
        sock, address = super().get_request()
        # Without this, Nagle plus delayed ACK adds ~40 ms to each keep-alive reply.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._open_lock:
            self._open.add(sock)
        self.fake._connection_accepted()
        return sock, address

    def shutdown_request(self, request: Any) -> None:
        """Forget and close a finished connection."""
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Shut down every connection still open."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


# --- helpers shared by the providers ----------------------------------------


def json_reply(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Reply:
    return Reply(
        status, json.dumps(payload).encode(), "application/json", headers or {}
    )


# Every hosted page says what it is: in the demo a newcomer lands here from checkout.
SIMULATED_NOTICE = (
    '<aside id="simulated-provider" role="note" style="background:#b91c1c;'
    'color:#fff;font-weight:700;padding:.5rem 1rem;">SIMULATED PROVIDER — this '
    "page is served by the project's fake provider server on this machine: no "
    "real payment provider is involved and no money moves.</aside>"
)


def html_page(title: str, inner: str, status: int = 200) -> Reply:
    document = (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title></head><body>{SIMULATED_NOTICE}{inner}"
        "</body></html>"
    )
    return Reply(status, document.encode(), "text/html; charset=utf-8")


def redirect(location: str) -> Reply:
    return Reply(303, b"", headers={"Location": location})


def basic_auth(header: str) -> tuple[str, str]:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return "", ""
    user, _, password = decoded.partition(":")
    return user, password


def parse_form(body: bytes) -> dict[str, str]:
    # The real service is PHP: $_POST keeps the last of repeated fields.
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[-1] for name, values in parsed.items()}


def parse_decimal(text: str) -> Decimal | None:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def random_alnum(length: int) -> str:
    return "".join(secrets.choice(_UPPER_ALNUM) for _ in range(length))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def append_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def escape(value: Any) -> str:
    return html.escape(str(value))
