"""Serve the demo's fake providers until SIGINT/SIGTERM: `python -m fakeproviders`.

Started by `manage.py devserver`; see demo.py.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .demo import demo_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fakeproviders")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--site-url", required=True, help="the web server to notify")
    parser.add_argument("--state", default="", help="file that keeps the records")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    fake = demo_server(port=args.port, site_url=args.site_url)
    restored = bool(args.state) and fake.load_state(args.state)
    fake.start()
    print(
        f"fake providers on {fake.url}"
        + (f" (records restored from {args.state})" if restored else ""),
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        fake.stop()
        if args.state:
            fake.save_state(args.state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
