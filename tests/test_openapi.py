"""docs/openapi.yaml: a valid OpenAPI 3.1 document that covers every /api/ route."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from django.urls import URLPattern, URLResolver, get_resolver
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from gateways.registry import ADAPTERS

SPEC = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load(SPEC.read_text())


def routes(resolver=None, prefix: str = ""):
    """Yield (OpenAPI-style path, pattern) for every path() route of the project."""
    for entry in (resolver or get_resolver()).url_patterns:
        text = str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from routes(entry, prefix + text)
        elif isinstance(entry, URLPattern) and not text.startswith("^"):
            # path() routes only: the regex catch-all under /api/ is the JSON 404.
            yield "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", prefix + text), entry


def test_the_document_is_valid_openapi_3_1(spec):
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def test_the_validator_does_catch_a_broken_document(spec):
    broken = {**spec, "paths": {"/x/": {"get": {"responses": "not a mapping"}}}}
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_every_api_route_is_documented(spec):
    documented = set(spec["paths"])
    api_routes = [path for path, _ in routes() if path.startswith("/api/")]
    assert len(api_routes) >= 4
    assert [path for path in api_routes if path not in documented] == []
    # Each gateway's webhook has its own entry, with its own body.
    for code in ADAPTERS:
        assert f"/api/webhooks/{code}/" in documented


def test_health_and_metrics_are_documented(spec):
    assert {"/health/", "/metrics"} <= set(spec["paths"])


def test_the_route_listing_sees_parameters():
    paths = {path for path, _ in routes()}
    assert "/api/payments/status/{ref_id}/" in paths
