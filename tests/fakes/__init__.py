"""Fake payment providers served over loopback HTTP for integration tests."""

from .server import FAULT_KINDS, FakeProviderServer, cp_signature

__all__ = ["FAULT_KINDS", "FakeProviderServer", "cp_signature"]
