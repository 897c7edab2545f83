"""The OpenAPI schema: served, complete with examples, and fuzzed by schemathesis without a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, given, settings

from accounts.apikeys import create_api_key
from analytics.tests.query_support import add_events, make_cast

OUR_PATHS = (
    "/api/v2/query",
    "/api/v1/stats/realtime/visitors",
    "/api/v1/stats/aggregate",
    "/api/v1/stats/timeseries",
    "/api/v1/stats/breakdown",
    "/api/v1/sites/goals",
    "/api/v1/sites/goals/{goal_id}",
    "/api/v1/sites/{domain}/realtime",
    "/api/v1/sites/{domain}/export",
)


@pytest.fixture
def api_schema(db: None) -> Iterator[Any]:
    # As Django's test client does: requests must not close the test transaction's connection.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
        yield schema.include(path_regex=r"^/api/v(1/stats|2|1/sites/goals|1/sites/\{domain\}/(realtime|export))")
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_key(data_redis: Any) -> str:
    cast = make_cast()
    import datetime as dt

    add_events(cast["site"], [{"visitor": 1, "ts": dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)}])
    _, key = create_api_key(cast["account"], "fuzz", ["stats:read", "sites:write"])
    return key


@pytest.mark.django_db
def test_the_schema_describes_every_endpoint_with_an_example(client: Client) -> None:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in OUR_PATHS:
        assert path in paths, path
        for operation in paths[path].values():
            text = str(operation)
            assert "example" in text, (path, operation.get("operationId"))


@pytest.mark.django_db
def test_the_docs_page_loads_its_assets_from_our_own_static_files(client: Client) -> None:
    for path in ("/api/docs/", "/api/docs"):
        response = client.get(path)
        assert response.status_code == 200
        html = response.content.decode()
        assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
        assert "cdn" not in html.lower()


@pytest.mark.django_db
def test_no_request_the_schema_allows_answers_5xx(api_schema: Any, fuzz_key: str) -> None:
    headers = {"Authorization": f"Bearer {fuzz_key}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= len(OUR_PATHS)

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case: Any) -> None:
            response = case.call(headers=headers)
            assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])

        fuzz()
