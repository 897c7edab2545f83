"""The collector over real HTTP: a uvicorn process, the test database, Redis and broker."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.models import Site
from analytics.collector import endpoints as collector_app
from analytics.collector.ratelimit import TokenBuckets
from analytics.collector.sitecache import SiteInfo
from analytics.payloads import parse_event
from analytics.tests.collector_fixtures import (
    BROWSER_UA,
    consume,
    events_of,
    make_site,
    purge_events_queue,
    start_server,
    stop_server,
)
from spinnakr.tests.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]
settings_for_http = hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def hostile_site() -> Site:
    site = make_site()
    site.domain = "hostile.example"
    site.save()
    return site


def post(url: str, body: object, *, ip: str | None = None, **headers: str) -> httpx.Response:
    sent = {"user-agent": BROWSER_UA, "content-type": "text/plain", **headers}
    if ip is not None:
        sent["x-forwarded-for"] = ip
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{url}/api/event", content=data, headers=sent, timeout=10)


def unique_ip() -> str:
    raw = uuid.uuid4().int
    return f"10.{raw % 250}.{(raw >> 8) % 250}.{(raw >> 16) % 250 + 1}"


def test_it_accepts_a_pageview_and_publishes_it_enriched(collector: str) -> None:
    purge_events_queue()
    site = make_site()
    url = f"https://{site.domain}/pricing?utm_source=newsletter&utm_medium=email&utm_campaign=spring"

    response = post(
        collector,
        {"n": "pageview", "u": url, "d": site.domain, "r": "https://www.google.com/", "w": 1280},
        ip="81.2.69.142",
        origin=f"https://{site.domain}",
    )

    assert response.status_code == 202
    assert response.json() == {}
    assert response.headers["access-control-allow-origin"] == f"https://{site.domain}"
    events = events_of(consume(lambda got: events_of(got, site.id)), site.id)
    assert len(events) == 1
    event = events[0]
    assert event["name"] == "pageview"
    assert event["hostname"] == site.domain
    assert event["pathname"] == "/pricing"
    assert event["utm_source"] == "newsletter"
    assert event["utm_campaign"] == "spring"
    assert event["channel"] == "email"
    assert event["referrer"] == "google.com"
    assert event["country"] == "GB"
    assert event["browser"] == "Chrome"
    assert event["os"] == "Mac"
    assert event["device"] == "Desktop"
    assert event["screen"] == "laptop"
    assert isinstance(event["visitor_id"], int)
    assert "81.2.69.142" not in json.dumps(event)
    assert BROWSER_UA not in json.dumps(event)


def test_it_answers_a_preflight_with_cors_headers(collector: str) -> None:
    response = httpx.options(
        f"{collector}/api/event",
        headers={"origin": "https://shop.example", "access-control-request-method": "POST"},
    )

    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "https://shop.example"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "Content-Type" in response.headers["access-control-allow-headers"]


def test_its_answers_carry_the_origin_and_only_preflights_the_rest(collector: str) -> None:
    site = make_site()
    body = {"n": "pageview", "u": f"https://{site.domain}/", "d": site.domain}

    from_a_page = post(collector, body, ip=unique_ip(), origin="https://shop.example")
    from_a_server = post(collector, body, ip=unique_ip())

    assert [from_a_page.status_code, from_a_server.status_code] == [202, 202]
    assert from_a_page.headers["access-control-allow-origin"] == "https://shop.example"
    assert from_a_server.headers["access-control-allow-origin"] == "*"
    for response in (from_a_page, from_a_server):
        assert response.json() == {}
        assert response.headers["vary"] == "Origin"
        assert response.headers["content-type"] == "application/json"
        assert response.headers["cache-control"] == "no-store"
        assert "access-control-allow-methods" not in response.headers
        assert "access-control-expose-headers" not in response.headers


def test_it_rejects_a_body_that_is_not_json_with_cors_headers(collector: str) -> None:
    response = post(collector, b"{not json", ip=unique_ip())

    assert response.status_code == 400
    assert response.json() == {"error": "body: not valid JSON"}
    assert response.headers["access-control-allow-origin"] == "*"


def test_it_parses_json_whatever_the_content_type(collector: str) -> None:
    site = make_site()
    body = {"name": "pageview", "url": f"https://{site.domain}/", "domain": site.domain}

    responses = [
        post(collector, body, ip=unique_ip(), **{"content-type": kind})
        for kind in ("application/json", "text/plain", "application/x-www-form-urlencoded")
    ]

    assert [response.status_code for response in responses] == [202, 202, 202]


def test_it_rejects_a_missing_name_naming_the_field(collector: str) -> None:
    site = make_site()

    response = post(collector, {"url": f"https://{site.domain}/", "domain": site.domain}, ip=unique_ip())

    assert response.status_code == 400
    assert response.json() == {"error": "name: required"}


def test_it_treats_null_as_absent_and_ignores_unknown_fields(collector: str) -> None:
    site = make_site()
    body = {"n": "pageview", "u": f"https://{site.domain}/", "d": site.domain, "r": None, "v": 27, "p": None}

    response = post(collector, body, ip=unique_ip())

    assert response.status_code == 202


def test_it_rejects_nested_props_naming_the_property(collector: str) -> None:
    site = make_site()
    body = {"n": "Signup", "u": f"https://{site.domain}/", "d": site.domain, "p": {"plan": {"tier": "pro"}}}

    response = post(collector, body, ip=unique_ip())

    assert response.status_code == 400
    assert response.json() == {"error": "props.plan: must be a string, number or boolean"}


def test_it_rejects_more_than_thirty_props(collector: str) -> None:
    site = make_site()
    props = {f"k{index}": "v" for index in range(31)}

    response = post(collector, {"n": "Signup", "u": f"https://{site.domain}/", "d": site.domain, "p": props})

    assert response.status_code == 400
    assert response.json() == {"error": "props: more than 30 properties"}


def test_it_rejects_an_invalid_revenue_currency(collector: str) -> None:
    site = make_site()
    body = {"n": "Buy", "u": f"https://{site.domain}/", "d": site.domain, "$": {"amount": 9, "currency": "euro"}}

    response = post(collector, body, ip=unique_ip())

    assert response.status_code == 400
    assert response.json()["error"].startswith("revenue.currency")


def test_it_answers_404_for_an_unknown_domain_with_cors_headers(collector: str) -> None:
    response = post(
        collector,
        {"n": "pageview", "u": "https://nowhere.example/", "d": "nowhere.example"},
        ip=unique_ip(),
        origin="https://nowhere.example",
    )

    assert response.status_code == 404
    assert response.json() == {"error": "unknown domain: nowhere.example"}
    assert response.headers["access-control-allow-origin"] == "https://nowhere.example"


def test_it_answers_404_for_an_unknown_site_key(collector: str) -> None:
    response = post(collector, {"n": "pageview", "u": "https://x.example/", "k": "pk_nothing"}, ip=unique_ip())

    assert response.status_code == 404
    assert response.json() == {"error": "unknown site key"}


def test_it_finds_the_site_by_its_public_key(collector: str) -> None:
    purge_events_queue()
    site = make_site()

    response = post(collector, {"n": "pageview", "u": "https://renamed.example/", "k": site.site_key}, ip=unique_ip())

    assert response.status_code == 202
    assert len(events_of(consume(lambda got: events_of(got, site.id)), site.id)) == 1


def test_it_sends_to_each_site_of_a_domain_list(collector: str) -> None:
    purge_events_queue()
    first, second = make_site(), make_site()
    body = {"n": "pageview", "u": f"https://{first.domain}/", "d": f"{first.domain}, {second.domain}"}

    response = post(collector, body, ip=unique_ip())

    assert response.status_code == 202
    messages = consume(lambda got: events_of(got, first.id) and events_of(got, second.id))
    assert len(events_of(messages, first.id)) == 1
    assert len(events_of(messages, second.id)) == 1


def test_it_refuses_an_origin_outside_the_allowed_list(collector: str) -> None:
    site = make_site()
    site.allowed_origins = [f"https://{site.domain}"]
    site.save()
    body = {"n": "pageview", "u": f"https://{site.domain}/", "d": site.domain}

    refused = post(collector, body, ip=unique_ip(), origin="https://evil.example")
    allowed = post(collector, body, ip=unique_ip(), origin=f"https://{site.domain}")

    assert refused.status_code == 403
    assert refused.json() == {"error": f"origin not allowed for {site.domain}"}
    assert refused.headers["access-control-allow-origin"] == "https://evil.example"
    assert allowed.status_code == 202


def test_it_learns_of_a_changed_site_before_the_next_request(collector: str) -> None:
    site = make_site()
    body = {"n": "pageview", "u": f"https://{site.domain}/", "d": site.domain}
    before = post(collector, body, ip=unique_ip(), origin="https://elsewhere.example")

    site.allowed_origins = [f"https://{site.domain}"]
    site.save()
    after = post(collector, body, ip=unique_ip(), origin="https://elsewhere.example")

    assert before.status_code == 202
    assert after.status_code == 403


def test_it_refuses_events_of_a_suspended_account(collector: str) -> None:
    site = make_site(suspended=True)

    response = post(collector, {"n": "pageview", "u": f"https://{site.domain}/", "d": site.domain}, ip=unique_ip())

    assert response.status_code == 403
    assert response.json() == {"error": "account suspended"}


def test_it_refuses_events_of_an_account_over_its_quota(collector: str) -> None:
    site = make_site()
    body = {"n": "pageview", "u": f"https://{site.domain}/", "d": site.domain}
    client = redis.Redis.from_url(settings.REDIS_DATA_URL)
    client.sadd("quota:over", site.account_id)
    try:
        statuses = [post(collector, body, ip=unique_ip()).status_code for _ in range(3)]
        # The collector reads the over-quota set every few seconds, never per request.
        refused = wait_for(
            lambda: answer_with(403, collector, body),
            timeout=10,
            interval=0.25,
            message="a 403 for the over-quota site",
        )
    finally:
        client.srem("quota:over", site.account_id)

    assert statuses[0] in {202, 403}
    assert refused is not None
    assert refused.json() == {"error": "monthly event quota exceeded"}


def answer_with(status: int, url: str, body: object) -> httpx.Response | None:
    """The collector's answer to one more event, if it has ``status``."""
    response = post(url, body, ip=unique_ip())
    return response if response.status_code == status else None


def test_it_refuses_a_body_over_16_kib_with_413(collector: str) -> None:
    site = make_site()
    body = {"n": "pageview", "u": f"https://{site.domain}/", "d": site.domain, "p": {"x": "y" * 17_000}}

    response = post(collector, body, ip=unique_ip())

    assert response.status_code == 413
    assert response.json() == {"error": "body larger than 16384 bytes"}
    assert response.headers["access-control-allow-origin"] == "*"


def test_it_refuses_a_chunked_body_over_16_kib_while_reading_it(collector: str) -> None:
    def chunks():  # no Content-Length: the collector counts as it reads
        for _ in range(40):
            yield b" " * 1024

    response = httpx.post(f"{collector}/api/event", content=chunks(), headers={"x-forwarded-for": unique_ip()})

    assert response.status_code == 413


def test_it_answers_405_to_a_get_with_cors_headers(collector: str) -> None:
    response = httpx.get(f"{collector}/api/event")

    assert response.status_code == 405
    assert response.json() == {"error": "method not allowed: use POST"}
    assert response.headers["access-control-allow-origin"] == "*"


def test_it_accepts_and_drops_bots_counting_them_per_site(collector: str) -> None:
    purge_events_queue()
    site = make_site()
    body = {"n": "pageview", "u": f"https://{site.domain}/", "d": site.domain}
    bot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    client = redis.Redis.from_url(settings.REDIS_DATA_URL)
    client.delete(f"{{s:{site.id}}}:dropped:bots")  # ids repeat across test sessions

    responses = [post(collector, body, ip=unique_ip(), **{"user-agent": bot}) for _ in range(3)]

    assert [response.status_code for response in responses] == [202, 202, 202]
    assert events_of(consume(timeout=1.5), site.id) == []
    dropped = wait_for(lambda: client.get(f"{{s:{site.id}}}:dropped:bots"), timeout=15, message="the bot counter")
    assert dropped == b"3"


def test_it_accepts_engagement_events_with_scroll_depth_and_time(collector: str) -> None:
    purge_events_queue()
    site = make_site()
    body = {"n": "engagement", "u": f"https://{site.domain}/post", "d": site.domain, "sd": 73, "e": 12_500}

    response = post(collector, body, ip=unique_ip())

    assert response.status_code == 202
    (event,) = events_of(consume(lambda got: events_of(got, site.id)), site.id)
    assert (event["name"], event["scroll_depth"], event["engagement_ms"]) == ("engagement", 73, 12_500)


def test_it_keeps_props_revenue_interactive_and_hash_paths(collector: str) -> None:
    purge_events_queue()
    site = make_site()
    body = {
        "name": "Signup",
        "url": f"https://{site.domain}/app#/checkout",
        "domain": site.domain,
        "props": {"plan": "pro", "seats": 3, "trial": True, "gone": None},
        "revenue": {"amount": "9.5", "currency": "eur"},
        "interactive": False,
        "h": 1,
    }

    response = post(collector, body, ip=unique_ip())

    assert response.status_code == 202
    (event,) = events_of(consume(lambda got: events_of(got, site.id)), site.id)
    assert event["props"] == {"plan": "pro", "seats": "3", "trial": "true"}
    assert (event["revenue_amount"], event["revenue_currency"]) == ("9.5000", "EUR")
    assert event["interactive"] is False
    assert event["pathname"] == "/app#/checkout"


def test_it_hashes_the_leftmost_forwarded_address_into_the_visitor_id(collector: str) -> None:
    purge_events_queue()
    site = make_site()
    body = {"n": "pageview", "u": f"https://{site.domain}/", "d": site.domain}

    for forwarded in ("203.0.113.7, 10.0.0.1", "203.0.113.7", "203.0.113.8, 203.0.113.7"):
        assert post(collector, body, ip=forwarded).status_code == 202

    events = events_of(consume(lambda got: len(events_of(got, site.id)) == 3), site.id)
    ids = [event["visitor_id"] for event in sorted(events, key=lambda event: event["ts"])]
    assert ids[0] == ids[1]
    assert ids[2] != ids[0]


def test_it_rate_limits_one_address_with_retry_after(strict_collector: str) -> None:
    site = make_site()
    body = {"n": "pageview", "u": f"https://{site.domain}/", "d": site.domain}
    address = unique_ip()

    statuses = [post(strict_collector, body, ip=address).status_code for _ in range(5)]
    limited = post(strict_collector, body, ip=address, origin="https://a.example")
    other = post(strict_collector, body, ip=unique_ip())

    assert statuses == [202] * 5
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json() == {"error": "rate limit exceeded for this address"}
    assert limited.headers["access-control-allow-origin"] == "https://a.example"
    # A cross-origin page may read Retry-After only when it is exposed.
    assert limited.headers["access-control-expose-headers"] == "Retry-After"
    assert other.status_code == 202


FIELDS = ["n", "name", "u", "url", "d", "domain", "k", "key", "r", "referrer", "p", "props", "m", "meta"]
FIELDS += ["$", "revenue", "i", "interactive", "h", "w", "screen_width", "sd", "e", "v", "junk"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


HOSTILE_DOMAIN = "hostile.example"
hostile_bodies = st.builds(
    lambda random, steered: {**random, **steered},
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=5),
    st.fixed_dictionaries(
        {
            "d": st.just(HOSTILE_DOMAIN) | json_values,
            "n": st.just("pageview") | json_values,
            "u": st.just(f"https://{HOSTILE_DOMAIN}/x?utm_source=a") | json_values,
        }
    ),
)


@settings_for_http
@given(body=hostile_bodies)
def test_hostile_json_never_causes_a_500_nor_a_202_for_an_invalid_event(
    collector: str, hostile_site: Site, body: dict[str, object]
) -> None:
    response = post(collector, body, ip=unique_ip())

    assert response.status_code in {202, 400, 404}
    assert "error" in response.json() or response.status_code == 202
    assert response.status_code != 202 or HOSTILE_DOMAIN in parse_event(body).domains


@settings_for_http
@given(raw=st.binary(max_size=300))
def test_hostile_bytes_never_cause_a_500(collector: str, raw: bytes) -> None:
    response = post(collector, raw, ip=unique_ip())

    assert response.status_code in {400, 404}
    assert isinstance(response.json()["error"], str)


def test_the_pixel_records_a_pageview_of_the_referring_page(collector: str) -> None:
    purge_events_queue()
    site = make_site()

    response = httpx.get(
        f"{collector}/api/pixel/{site.site_key}.gif",
        params={"u": f"https://{site.domain}/no-js", "r": "https://duckduckgo.com/"},
        headers={"user-agent": BROWSER_UA, "x-forwarded-for": unique_ip()},
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content.startswith(b"GIF89a")
    (event,) = events_of(consume(lambda got: events_of(got, site.id)), site.id)
    assert (event["name"], event["pathname"], event["referrer_source"]) == ("pageview", "/no-js", "DuckDuckGo")


def test_the_pixel_answers_404_for_an_unknown_key(collector: str) -> None:
    response = httpx.get(f"{collector}/api/pixel/pk_unknown.gif", headers={"x-forwarded-for": unique_ip()})

    assert response.status_code == 404
    assert response.json() == {"error": "unknown site key"}


def test_a_site_is_rate_limited_by_its_plan() -> None:
    free = SiteInfo(1, 1, "free.example", "pk_free", frozenset(), suspended=False, plan="free")
    business = SiteInfo(2, 2, "business.example", "pk_business", frozenset(), suspended=False, plan="business")
    buckets = TokenBuckets(1.0, 1.0)
    rate, burst = free.rate

    free_answers = [buckets.take(free.site_id, rate=rate, burst=burst, now=100.0) for _ in range(int(burst) + 1)]
    rate, burst = business.rate
    business_answers = [
        buckets.take(business.site_id, rate=rate, burst=burst, now=100.0) for _ in range(int(free.rate[1]) + 1)
    ]
    later = buckets.take(free.site_id, rate=free.rate[0], burst=free.rate[1], now=101.0)

    assert free_answers[:-1] == [0.0] * int(free.rate[1])
    assert free_answers[-1] > 0
    assert business_answers == [0.0] * (int(free.rate[1]) + 1)
    assert later == 0.0


@pytest.fixture
def proxied_collector(django_db_setup, django_db_blocker, tmp_path):
    """A collector that believes X-Forwarded-For only from 10.9.9.9 (tests connect from 127.0.0.1)."""
    with django_db_blocker.unblock():
        server = start_server(tmp_path, {"TRUSTED_PROXIES": "10.9.9.9"})
    yield server.url
    stop_server(server)


def test_trusted_proxies_narrow_whose_forwarded_address_counts(proxied_collector: str) -> None:
    purge_events_queue()
    site = make_site()
    body = {"n": "pageview", "u": f"https://{site.domain}/", "d": site.domain}

    statuses = [post(proxied_collector, body, ip=address).status_code for address in ("81.2.69.142", "8.8.8.8")]

    assert statuses == [202, 202]
    events = events_of(consume(lambda got: len(events_of(got, site.id)) == 2), site.id)
    assert {event["country"] for event in events} == {""}
    assert len({event["visitor_id"] for event in events}) == 1


# Text PostgreSQL cannot store: a NUL (text and jsonb refuse it) or a lone surrogate (no UTF-8 form).
NUL_AND_SURROGATES = ["\x00", "\ud800", "\udc00"]
UNSTORABLE = "contains a NUL or an unpaired surrogate, which cannot be stored"


@pytest.mark.parametrize("bad", NUL_AND_SURROGATES)
@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (lambda domain, bad: {"n": f"Sign{bad}up"}, "name"),
        (lambda domain, bad: {"u": f"https://{domain}/pa{bad}th"}, "url"),
        (lambda domain, bad: {"u": f"https://{domain}{bad}/"}, "url"),
        (lambda domain, bad: {"u": f"https://{domain}/?utm_campaign=spring{bad}"}, "url"),
        (lambda domain, bad: {"d": f"{domain},{bad}b.example"}, "domain"),
        (lambda domain, bad: {"r": f"https://t.co/{bad}"}, "referrer"),
        (lambda domain, bad: {"p": {"plan": f"pro{bad}"}}, "props.plan"),
        (lambda domain, bad: {"p": {f"pl{bad}an": "pro"}}, "props.pl{bad}an"),
    ],
)
def test_it_refuses_text_postgresql_cannot_store_naming_the_field_and_publishes_nothing(
    collector: str, fields: Any, named: str, bad: str
) -> None:
    purge_events_queue()
    site = make_site()
    good = {"n": "pageview", "u": f"https://{site.domain}/good", "d": site.domain}

    refused = post(
        collector, {**good, **fields(site.domain, bad)}, ip=unique_ip()
    )  # json.dumps escapes: \u0000, \ud800
    accepted = post(collector, good, ip=unique_ip())

    assert refused.status_code == 400
    assert refused.json() == {"error": f"{named.format(bad=bad)}: {UNSTORABLE}"}
    assert refused.headers["access-control-allow-origin"] == "*"
    assert accepted.status_code == 202
    events = events_of(consume(lambda got: events_of(got, site.id)), site.id)
    assert [event["pathname"] for event in events] == ["/good"]


@pytest.mark.parametrize("param", ["utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "ref"])
def test_it_refuses_a_query_value_that_decodes_to_a_nul_naming_the_parameter(collector: str, param: str) -> None:
    site = make_site()

    response = post(collector, {"n": "pageview", "u": f"https://{site.domain}/?{param}=a%00b", "d": site.domain})

    assert response.status_code == 400
    assert response.json() == {"error": f"url.{param}: {UNSTORABLE}"}


def test_it_stores_a_nul_left_encoded_in_the_path_and_a_decoded_surrogate_as_replacement(collector: str) -> None:
    purge_events_queue()
    site = make_site()
    url = f"https://{site.domain}/a%00b?utm_term=%ED%A0%80&other=%00"

    response = post(collector, {"n": "pageview", "u": url, "d": site.domain}, ip=unique_ip())

    assert response.status_code == 202
    (event,) = events_of(consume(lambda got: events_of(got, site.id)), site.id)
    assert (event["pathname"], event["utm_term"]) == ("/a%00b", "\ufffd" * 3)


@pytest.mark.parametrize("query", [{"u": "https://{domain}/a\x00"}, {"r": "https://t.co/\x00"}])
def test_the_pixel_refuses_a_nul_in_its_query_string(collector: str, query: dict[str, str]) -> None:
    site = make_site()
    params = {name: value.format(domain=site.domain) for name, value in query.items()}

    response = httpx.get(
        f"{collector}/api/pixel/{site.site_key}.gif", params=params, headers={"x-forwarded-for": unique_ip()}
    )

    assert response.status_code == 400
    assert response.json()["error"].endswith(UNSTORABLE)


def test_the_pixel_refuses_a_nul_in_its_key_before_looking_it_up(collector: str) -> None:
    response = httpx.get(f"{collector}/api/pixel/pk%00x.gif", headers={"x-forwarded-for": unique_ip()})

    assert response.status_code == 400
    assert response.json() == {"error": f"key: {UNSTORABLE}"}


def call_asgi(handler: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> Any:
    """``handler`` called in process: header bytes a real HTTP server would refuse (a NUL) still reach it
    from another server or proxy in front of the app."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": b"", "headers": headers}
    scope |= {"client": (unique_ip(), 5000)}
    asyncio.run(handler(scope, receive, send))
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_it_refuses_a_nul_in_the_user_agent_header() -> None:
    body = json.dumps({"n": "pageview", "u": "https://a.example/", "d": "a.example"}).encode()

    status, answer = call_asgi(
        collector_app.event_endpoint, "POST", "/api/event", [(b"user-agent", b"Mozilla\x00")], body
    )

    assert (status, answer) == (400, {"error": f"user-agent: {UNSTORABLE}"})


@pytest.mark.parametrize("header", [b"referer", b"user-agent"])
def test_the_pixel_refuses_a_nul_in_its_referer_and_user_agent_headers(header: bytes) -> None:
    site = make_site()
    headers = [(b"referer", f"https://{site.domain}/".encode()), (b"user-agent", BROWSER_UA.encode())]

    status, answer = call_asgi(
        collector_app.pixel_endpoint, "GET", f"/api/pixel/{site.site_key}.gif", [*headers, (header, b"x\x00")]
    )

    assert status == 400
    assert answer["error"].endswith(UNSTORABLE)


def test_an_event_the_publisher_cannot_encode_is_the_senders_error_not_an_outage() -> None:
    # Validation refuses such text first; an event that slipped past it still fails alone, as a 400.
    event: Any = {"name": "pageview", "pathname": "/\ud800"}

    with pytest.raises(collector_app.Reject) as refused:
        asyncio.run(collector_app.publish([event]))

    assert (refused.value.status, refused.value.headers) == (400, [])
