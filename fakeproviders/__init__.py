"""Fake payment providers served over loopback HTTP.

The tests drive them over real sockets (`tests/fakes/` re-exports this
package), and `manage.py devserver` runs one beside the demo web server so the
demo can pay, refresh, refund and reconcile through each provider's protocol
with no credentials. Never part of a production deployment: nothing outside
the tests, the benches and the DEBUG-only demo commands imports it.
"""

from .server import FAULT_KINDS, FakeProviderServer, cp_signature, stripe_signature

__all__ = ["FAULT_KINDS", "FakeProviderServer", "cp_signature", "stripe_signature"]
