"""Compaction of closed days: dense HyperLogLogs rewritten sparse, every answer unchanged."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from redis.client import NEVER_DECODE

from analytics.ingest import compact, rollups
from analytics.ingest.pipeline import ingest
from analytics.ingest.rebuild import rebuild_site
from analytics.query import redis_path, sql
from analytics.query.engine import site_goals
from analytics.query.model import parse_query
from analytics.tasks import compact_rollups
from analytics.tests.factories import make_event, make_site
from spinnakr import redis_clients
from spinnakr.celery import app

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("data_redis")]


def rollups_server() -> redis_clients.Rollups:
    """The one server holding every site's rollups: the data Redis, or REDIS_URLS' only entry."""
    [server] = redis_clients.rollup_servers()
    return server


DAY = datetime(2026, 3, 10, tzinfo=UTC)
BROWSERS = ("Firefox", "Chrome")  # a visitor's browser: its id's parity
LATER = DAY + timedelta(days=3, hours=12)
SHAPES = [
    {"metrics": ["visitors", "pageviews", "events"], "dimensions": ["event:page"]},
    {"metrics": ["visitors", "visits", "bounce_rate", "visit_duration"], "dimensions": ["visit:browser"]},
    {"metrics": ["visitors", "events"], "dimensions": ["event:name"]},
    {"metrics": ["visits", "bounce_rate", "visit_duration"], "dimensions": ["visit:entry_page"]},
    {"metrics": ["visits"], "dimensions": ["visit:exit_page"]},
    {"metrics": ["visits", "pageviews", "events"], "dimensions": ["visit:source"]},
    {"metrics": ["visitors", "visits", "pageviews"]},
]


def raw(key: str) -> bytes:
    value = rollups_server().execute_command("GET", key, **{NEVER_DECODE: True})
    assert isinstance(value, bytes)
    return value


def load_day(site, visitors: int) -> None:
    """A pageview of each visitor (two pages, two browsers) and a signup of every tenth."""
    events = [
        make_event(
            site,
            DAY + timedelta(seconds=10 * n),
            visitor=n,
            pathname=f"/{n % 2}",
            browser=BROWSERS[n % 2],
        )
        for n in range(1, visitors + 1)
    ]
    events += [
        make_event(site, DAY + timedelta(seconds=10 * n + 5), "Signup", visitor=n, browser=BROWSERS[n % 2])
        for n in range(1, visitors, 10)
    ]
    for start in range(0, len(events), 1000):
        ingest(uuid.uuid4().hex, events[start : start + 1000])


def answers(site, *, path: str = "redis") -> list[dict[tuple[str, ...], dict[str, object]]]:
    out = []
    for shape in SHAPES:
        body = {**shape, "date_range": ["2026-03-09", "2026-03-10"]}
        query = parse_query(site, body, goals=set(), now=LATER, first_event_day=None)
        rows = redis_path.answer(query) if path == "redis" else sql.execute(query, site_goals(site)).rows
        out.append({tuple(d): {m: v[m] for m in query.metrics} for d, v in rows or []})
    return out


def agree(redis_answers, sql_answers) -> bool:
    """Counts equal, unique visitors (HyperLogLog on the Redis side) within 2 %."""
    for from_redis, from_sql in zip(redis_answers, sql_answers, strict=True):
        assert set(from_redis) == set(from_sql)
        for key, values in from_sql.items():
            for metric, value in values.items():
                other = from_redis[key][metric]
                close = abs(int(value) - int(other)) <= 0.02 * int(value) if metric == "visitors" else value == other
                assert close, (key, metric, value, other)
    return True


def test_the_sparse_form_holds_the_registers_of_the_dense_one():
    client = rollups_server()  # the keys share a hash tag: one slot on a cluster
    client.pfadd("{t}dense", *[f"v{n}" for n in range(5000)])
    dense = raw("{t}dense")
    sparse = compact.sparse_form(dense)
    assert sparse is not None
    assert len(dense) == compact.DENSE_SIZE
    assert len(sparse) < len(dense)
    client.set("{t}sparse", sparse)
    client.pfmerge("{t}merged", "{t}sparse")  # a dense copy of the sparse one's registers
    assert raw("{t}merged")[compact.HEADER :] == dense[compact.HEADER :]
    assert client.pfcount("{t}sparse") == client.pfcount("{t}dense")


def test_a_hyperloglog_whose_sparse_form_is_no_smaller_stays_dense():
    client = rollups_server()
    client.pfadd("dense", *[f"v{n}" for n in range(40_000)])
    assert compact.sparse_form(raw("dense")) is None


@time_machine.travel(LATER, tick=False)
def test_compacting_a_closed_day_shrinks_its_hyperloglogs_and_changes_no_answer():
    site = make_site()
    with time_machine.travel(DAY + timedelta(hours=23), tick=False):
        load_day(site, 2400)
    before = answers(site)
    day_key = f"{rollups.prefix(site.id)}uv:d:20260310"
    assert rollups_server().strlen(day_key) == compact.DENSE_SIZE

    done = compact.compact_site(site.id, DAY.date(), DAY.date())

    assert done.rewritten == done.keys >= 4  # the day's, hostname's, pageview's, a browser's…
    assert rollups_server().strlen(day_key) < compact.DENSE_SIZE
    assert answers(site) == before


@time_machine.travel(LATER, tick=False)
def test_late_events_after_compaction_count_and_both_paths_still_agree():
    site = make_site()
    with time_machine.travel(DAY + timedelta(hours=23), tick=False):
        load_day(site, 2400)
        done = compact.compact_site(site.id, DAY.date(), DAY.date())
        assert done.breakdowns > 0
        visitors = rollups.visitors(site.id, "d", ["20260310"])
        late = [
            make_event(site, DAY + timedelta(hours=22), visitor=99_999, pathname="/0"),  # a new visit
            make_event(
                site, DAY + timedelta(seconds=25), visitor=2, pathname="/1", browser=BROWSERS[0]
            ),  # moves an exit page
            make_event(
                site, DAY + timedelta(seconds=15), visitor=3, pathname="/new", browser=BROWSERS[1]
            ),  # moves an entry page
        ]
        ingest(uuid.uuid4().hex, late)
    assert rollups.visitors(site.id, "d", ["20260310"]) == visitors + 1
    assert agree(answers(site), answers(site, path="sql"))
    compact.compact_site(site.id, DAY.date(), DAY.date())
    assert agree(answers(site), answers(site, path="sql"))


def test_the_beat_task_compacts_a_day_once_two_more_have_begun():
    with time_machine.travel(DAY + timedelta(hours=23), tick=False):
        site = make_site()
        load_day(site, 2400)
    day_key = f"{rollups.prefix(site.id)}uv:d:20260310"
    pages = f"{rollups.prefix(site.id)}top:page:d:20260310:pageviews"
    compact.compact_closed_days(DAY + timedelta(days=1, hours=12))  # the day is not closed yet
    assert rollups_server().strlen(day_key) == compact.DENSE_SIZE
    assert rollups_server().exists(pages)
    compact.compact_closed_days(DAY + timedelta(days=2, hours=12))
    assert rollups_server().strlen(day_key) < compact.DENSE_SIZE
    assert not rollups_server().exists(pages)
    assert rollups.meta(site.id)["compacted_until"] == "20260310"


def test_a_beat_run_out_of_time_leaves_the_rest_to_the_next():
    with time_machine.travel(DAY + timedelta(hours=23), tick=False):
        site = make_site()
        load_day(site, 200)
    pages = f"{rollups.prefix(site.id)}top:page:d:20260310:pageviews"
    compact.compact_closed_days(LATER, budget_seconds=0)
    assert rollups_server().exists(pages)
    assert "compacted_until" not in rollups.meta(site.id)
    compact.compact_closed_days(LATER)
    assert not rollups_server().exists(pages)
    assert rollups.meta(site.id)["compacted_until"] == "20260311"


def test_the_beat_task_compacts_the_rebuilt_days_again():
    with time_machine.travel(DAY + timedelta(hours=23), tick=False):
        site = make_site()
        load_day(site, 200)
    pages = f"{rollups.prefix(site.id)}top:page:d:20260310:pageviews"
    with time_machine.travel(LATER, tick=False):
        compact.compact_closed_days(LATER)
        rebuild_site(site, grace_seconds=0)
        assert rollups_server().exists(pages)
        compact.compact_closed_days(LATER)
        assert not rollups_server().exists(pages)
        assert agree(answers(site), answers(site, path="sql"))


@time_machine.travel(LATER, tick=False)
def test_a_site_being_rebuilt_keeps_its_breakdowns_as_they_are():
    site = make_site()
    with time_machine.travel(DAY + timedelta(hours=23), tick=False):
        load_day(site, 200)
    rollups_server().hset(f"{rollups.prefix(site.id)}meta", "rebuilding", "1")
    assert compact.compact_site(site.id, DAY.date(), DAY.date()).breakdowns == 0
    assert rollups_server().exists(f"{rollups.prefix(site.id)}top:page:d:20260310:pageviews")


def test_a_key_written_since_it_was_read_is_left_as_it_is():
    site = make_site()
    client = redis_clients.for_site(site.id)
    key = f"{rollups.prefix(site.id)}uv:d:20260310"
    client.pfadd(key, *[f"v{n}" for n in range(3000)])
    read = raw(key)
    client.pfadd(key, "one more")
    changed = raw(key)
    sparse = compact.sparse_form(read)
    assert sparse is not None
    assert compact.rewrite_if_unchanged(site.id, [(key, read, sparse)]) == 0
    assert raw(key) == changed
    assert compact.rewrite_if_unchanged(site.id, [(key, changed, sparse)]) == 1
    assert raw(key) == sparse


def test_beat_runs_the_compaction_task_every_six_hours():
    entry = settings.CELERY_BEAT_SCHEDULE["analytics-compact-rollups"]
    assert entry == {"task": "analytics.compact_rollups", "schedule": 6 * 3600.0}
    assert app.tasks[entry["task"]].name == compact_rollups.name


def test_the_compaction_task_compacts_the_closed_days():
    with time_machine.travel(DAY + timedelta(hours=23), tick=False):
        site = make_site()
        load_day(site, 200)
    with time_machine.travel(LATER, tick=False):
        compact_rollups()
    assert not rollups_server().exists(f"{rollups.prefix(site.id)}top:page:d:20260310:pageviews")
