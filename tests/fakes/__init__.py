"""The fake provider server's own tests; the fake lives in `fakeproviders/`."""

from fakeproviders import FAULT_KINDS, FakeProviderServer, cp_signature

__all__ = ["FAULT_KINDS", "FakeProviderServer", "cp_signature"]
