"""Every consumer of the field registry (``analytics.fields``) covers exactly the registry."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, get_type_hints
from zoneinfo import ZoneInfo

import httpx
import pytest
from django.db import connection
from django.db.models import fields as model_fields
from django.test import Client

from analytics import fields
from analytics.api import sites as sites_api
from analytics.collector import endpoints
from analytics.dashboard import queries as dashboard_queries
from analytics.dashboard import views as dashboard_views
from analytics.ingest import rollups, screen, store
from analytics.ingest.siteinfo import SiteSettings
from analytics.live import push
from analytics.models import Event
from analytics.payloads import EnrichedEvent
from analytics.query import format as metric_format
from analytics.query import model, redis_path, sql, v1
from analytics.tests.collector_fixtures import BROWSER_UA, consume, events_of, make_site, purge_events_queue
from analytics.tests.dashboard_fixtures import Cast, cast
from analytics.tests.factories import make_event

__all__ = ["cast"]

PAYLOAD_NAMES = [f.name for f in fields.EVENT_FIELDS]
# The Django model field class of each column type.
MODEL_KINDS = {
    "bigint": model_fields.BigIntegerField,
    "timestamptz": model_fields.DateTimeField,
    "uuid": model_fields.UUIDField,
    "text": model_fields.TextField,
    "jsonb": model_fields.json.JSONField,
    "numeric": model_fields.DecimalField,
    "boolean": model_fields.BooleanField,
    "smallint": model_fields.SmallIntegerField,
    "integer": model_fields.IntegerField,
}
# information_schema's name of each column type.
SQL_KINDS = {
    "bigint": "bigint",
    "timestamptz": "timestamp with time zone",
    "uuid": "uuid",
    "text": "text",
    "jsonb": "jsonb",
    "numeric": "numeric",
    "boolean": "boolean",
    "smallint": "smallint",
    "integer": "integer",
}
LUA = Path(rollups.__file__).parent / "lua" / "apply_batch.lua"


def table_columns(table: str) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s", [table])
        return dict(cursor.fetchall())


# The enriched event and the collector ------------------------------------------------------


def test_the_enriched_event_type_holds_the_registry_fields_in_order_with_their_types() -> None:
    hints = get_type_hints(EnrichedEvent)
    assert list(hints) == PAYLOAD_NAMES
    assert hints == {f.name: f.type for f in fields.EVENT_FIELDS}


@pytest.mark.django_db(transaction=True)
def test_the_collector_publishes_every_registry_field_and_no_other(collector: str) -> None:
    purge_events_queue()
    site = make_site()

    response = httpx.post(
        f"{collector}/api/event",
        content=json.dumps({"n": "pageview", "u": f"https://{site.domain}/", "d": site.domain}).encode(),
        headers={"user-agent": BROWSER_UA, "content-type": "text/plain"},
        timeout=10,
    )

    assert response.status_code == 202
    (event,) = events_of(consume(lambda got: events_of(got, site.id)), site.id)
    assert list(event) == PAYLOAD_NAMES


def test_the_screen_checks_every_field_of_the_enriched_event() -> None:
    assert screen.CHECKED_FIELDS == set(PAYLOAD_NAMES)


# The store ---------------------------------------------------------------------------------


def test_the_event_model_has_one_column_of_the_registry_kind_per_field() -> None:
    columns = {f.column: type(f) for f in Event._meta.concrete_fields if f.column}
    assert columns == {f.store_column: MODEL_KINDS[f.kind] for f in fields.FIELDS}


@pytest.mark.django_db
def test_the_event_table_has_the_registry_columns_with_their_types() -> None:
    assert table_columns("analytics_event") == {f.store_column: SQL_KINDS[f.kind] for f in fields.FIELDS}


@pytest.mark.django_db
def test_the_visit_table_holds_each_visit_attribute_as_text() -> None:
    columns = table_columns("analytics_visit")
    own = store.VISIT_COLUMNS[: -len(fields.VISIT_ATTRIBUTES)]  # the key, start, end, counts, pages
    attributes = {name: kind for name, kind in columns.items() if name not in own}
    assert attributes == dict.fromkeys(fields.VISIT_ATTRIBUTES, "text")
    assert store.VISIT_COLUMNS[len(own) :] == fields.VISIT_ATTRIBUTES
    assert set(store.VISIT_COLUMNS) == set(columns)


def test_the_store_copies_every_column_once_with_a_value_each() -> None:
    event = make_event(SimpleNamespace(id=1, domain="example.com"), dt.datetime(2026, 3, 10, tzinfo=dt.UTC))  # type: ignore[arg-type]
    assert sorted(store.COPY_COLUMNS) == sorted(fields.STORE_COLUMNS)
    assert len(store._row(event, 7)) == len(store.COPY_COLUMNS)


# The rollups -------------------------------------------------------------------------------


def test_the_rollups_send_the_script_every_visit_attribute_of_an_event() -> None:
    info = SiteSettings(1, "example.com", ZoneInfo("UTC"), 1, 30, 10_000, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    event = make_event(SimpleNamespace(id=1, domain="example.com"), dt.datetime(2026, 3, 10, tzinfo=dt.UTC))  # type: ignore[arg-type]
    (prepared,) = rollups.prepare(info, [event])
    assert list(prepared["a"]) == [d.rollup for f in fields.FIELDS if f.scope != "event" for d in f.dimensions]


def test_the_rollup_script_gets_every_dimension_the_rollups_keep_as_an_argument() -> None:
    spec = json.loads(fields.ROLLUP_SPEC)
    kept = {d.rollup for d in fields.FIELD_DIMENSIONS if d.role != "name"}
    assert {dim for dim, _ in spec["event"]} | {dim for dim, _ in spec["visit"]} == kept
    assert spec["name"] == "name"
    assert spec["counters"] == list(rollups.COUNTER_FIELDS)


def test_the_rollup_script_names_no_dimension_itself() -> None:
    source = LUA.read_text()
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("--"))
    named = {d.rollup for d in fields.FIELD_DIMENSIONS} & set(re.findall(r"['\"]([a-z_]+)['\"]", code))
    assert named == set()


# The query model ---------------------------------------------------------------------------


def parse(body: dict[str, Any]) -> model.Query:
    site = SimpleNamespace(pk=1, domain="example.com", timezone="UTC")
    now = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)
    return model.parse_query(site, {"date_range": "7d", **body}, goals=set(), now=now, first_event_day=None)


def test_the_query_model_knows_exactly_the_registry_dimensions() -> None:
    assert {**model.EVENT_COLUMNS, **model.VISIT_COLUMNS} == fields.QUERY_DIMENSIONS
    assert set(sql.VISIT_COLUMNS) == {d for d in fields.QUERY_DIMENSIONS if d.startswith("visit:")}


@pytest.mark.parametrize("dimension", sorted(fields.QUERY_DIMENSIONS))
def test_the_query_model_breaks_down_and_filters_by_each_registry_dimension(dimension: str) -> None:
    query = parse({"metrics": ["visitors"], "dimensions": [dimension], "filters": [["is", dimension, ["x"]]]})
    assert query.dimensions == (dimension,)
    assert query.filter_dimensions() == {dimension}


def test_redis_breaks_down_by_exactly_the_dimensions_the_rollups_keep() -> None:
    kept = {d.name: d.rollup for d in fields.FIELD_DIMENSIONS}
    assert {name: rollup for name, (rollup, _) in redis_path.BREAKDOWNS.items()} == kept


def test_redis_answers_the_metrics_each_breakdown_has_always_answered() -> None:
    event = {"visitors", "pageviews", "events", "percentage"}
    acquisition = {"visits", "bounce_rate", "visit_duration", "pageviews", "events", "views_per_visit"}
    visitor = acquisition | {"visitors", "percentage"}
    expected = {
        "event:page": event,
        "event:hostname": event,
        "event:name": {"visitors", "events", "percentage"},
        "visit:entry_page": {"visits", "bounce_rate", "visit_duration"},
        "visit:exit_page": {"visits"},
        **{f"visit:{d}": acquisition for d in fields.ROLLUP_ACQUISITION},
        **{f"visit:{d}": visitor for d in fields.ROLLUP_VISITOR},
    }
    assert {name: set(metrics) for name, (_, metrics) in redis_path.BREAKDOWNS.items()} == expected


# Metrics -----------------------------------------------------------------------------------


def test_every_metric_list_is_the_registrys() -> None:
    names = set(fields.METRIC_NAMES)
    assert model.METRICS == fields.METRIC_NAMES
    assert set(v1.V1_METRICS) == names - {"percentage", "group_conversion_rate"}
    assert metric_format.INTEGER_METRICS | metric_format.FLOAT_METRICS | set(metric_format.REVENUE_METRICS) == names
    assert model.VISIT_METRICS == {"views_per_visit", "bounce_rate", "visit_duration"}
    assert redis_path.COUNTER_METRICS == {m.name for m in fields.METRICS if m.counter}
    assert [name for name, _ in dashboard_views.TOP_METRICS] == list(fields.TOP_METRICS)


# The dashboard, the export and the live stream ---------------------------------------------


@pytest.mark.django_db
def test_the_dashboard_page_gets_its_panels_labels_and_metrics_as_data(cast: Cast) -> None:
    client = Client()
    client.force_login(cast.owner)
    body = client.get("/sites/dash.example/").content.decode()

    config = json.loads(re.search(r'id="dashboard-config"[^>]*>(.*?)</script>', body, re.S).group(1))  # type: ignore[union-attr]
    tabs = re.findall(r'role="tab" class="tab" data-dimension="([^"]+)"', body)
    assert config["panels"] == fields.panels_data()
    assert tabs == [tab for panel in fields.PANELS for tab in panel.tabs]
    assert set(tabs) - {fields.PROPS_TAB[0]} <= set(fields.DIMENSION_BY_NAME)
    assert set(config["dimensionLabels"]) == {*fields.DIMENSION_BY_NAME, fields.PROPS_PREFIX}
    assert config["top"] == list(fields.TOP_METRICS)
    assert set(config["metrics"]) == set(fields.METRIC_NAMES)


def test_the_dashboard_script_repeats_no_label_of_the_registry() -> None:
    source = (Path(__file__).resolve().parents[2] / "static" / "src" / "dashboard" / "dashboard.js").read_text()
    labels = {d.label for d in fields.DIMENSIONS} | {m.label for m in fields.METRICS}
    assert {label for label in labels if f'"{label}"' in source} == set()


def test_the_export_has_a_csv_for_each_dimension_the_registry_exports() -> None:
    exported = {d.name: d.export for d in fields.DIMENSIONS if d.export}
    assert {dimension: name for name, dimension, _ in sites_api.EXPORT_BREAKDOWNS} == exported
    assert all(set(metrics) <= set(fields.METRIC_NAMES) for _, _, metrics in sites_api.EXPORT_BREAKDOWNS)


def test_the_live_stream_carries_the_registry_feed_fields() -> None:
    assert dashboard_queries.STREAM_FIELDS == ("timestamp", *fields.FEED_FIELDS)
    assert set(push._FEED_FIELDS) | {"props"} == set(fields.FEED_FIELDS)


def test_the_collector_builds_no_key_the_registry_lacks() -> None:
    source = Path(endpoints.__file__).read_text()
    body = source[source.index("def build_event(") : source.index("async def publish(")]
    assert re.findall(r'^        "([a-z_]+)":', body, re.M) == PAYLOAD_NAMES
