"""Fixtures of the service tests: the sandbox's refund calls, counted."""

from __future__ import annotations

import pytest


@pytest.fixture
def refund_calls(sandbox, monkeypatch):
    """The refund ids the sandbox was asked to refund, in order."""
    calls = []
    original = type(sandbox).refund

    def counting(self, request):
        calls.append(request.refund_id)
        return original(self, request)

    monkeypatch.setattr(type(sandbox), "refund", counting)
    return calls
