"""Incoming events: field names, precedence, the order of errors, client addresses of batch events."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analytics.payloads import InvalidEvent, parse_event, unstorable

BASE = {"n": "pageview", "u": "https://a.example/", "d": "a.example"}


def test_the_long_name_wins_over_the_short_one_and_null_counts_as_absent() -> None:
    event = parse_event({**BASE, "name": "signup", "url": None, "r": "https://t.co/", "referrer": None, "w": 800})

    assert (event.name, event.url, event.referrer, event.width) == (
        "signup",
        "https://a.example/",
        "https://t.co/",
        800,
    )
    assert parse_event({**BASE, "props": None, "p": {"a": 1}, "m": {"b": 2}}).props == {"a": "1"}


def test_the_first_bad_field_is_named() -> None:
    with pytest.raises(InvalidEvent) as exc:
        parse_event({**BASE, "u": 1, "w": "x", "r": 2})
    assert str(exc.value) == "url: must be a string"
    with pytest.raises(InvalidEvent) as exc:
        parse_event({**BASE, "w": "x", "r": 2, "p": 3})
    assert str(exc.value) == "referrer: must be a string"
    with pytest.raises(InvalidEvent) as exc:
        parse_event({**BASE, "w": "x", "p": 3})
    assert str(exc.value) == "props: must be an object of scalar values"
    with pytest.raises(InvalidEvent) as exc:
        parse_event({**BASE, "w": "x", "n": "engagement", "sd": -1})
    assert str(exc.value) == "screen_width: must be a number"


def test_domains_are_split_trimmed_and_lower_cased() -> None:
    assert parse_event({**BASE, "d": " A.example "}).domains == ["a.example"]
    assert parse_event({**BASE, "d": "A.example, ,b.example,"}).domains == ["a.example", "b.example"]
    with pytest.raises(InvalidEvent) as exc:
        parse_event({**BASE, "d": " , "})
    assert str(exc.value) == "domain: required (or key)"


@pytest.mark.parametrize(
    "address",
    ["203.0.113.7", "0.0.0.1", "255.255.255.255", "2001:DB8::1", "::ffff:1.2.3.4", "fe80::1%eth0", "::1"],
)
def test_a_batch_event_address_is_kept_in_canonical_form(address: str) -> None:
    event = parse_event({**BASE, "ip": f" {address} ", "user_agent": "UA"}, batch=True, now=time.time())

    assert event.ip == str(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    ["01.2.3.4", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.4/32", "0x1.2.3.4", "\u0661.2.3.4", "::g"],
)
def test_a_batch_event_address_that_ipaddress_refuses_is_refused(address: str) -> None:
    with pytest.raises(InvalidEvent) as exc:
        parse_event({**BASE, "ip": address, "user_agent": "UA"}, batch=True, now=time.time())
    assert str(exc.value) == "ip: not an IP address"


BATCH = {**BASE, "ip": "203.0.113.7", "user_agent": "UA", "timestamp": 1_765_000_000}
UNSTORABLE = ["\x00", "\ud800", "\udfff"]


@pytest.mark.parametrize("bad", UNSTORABLE)
@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (lambda bad: {"n": f"page{bad}view"}, "name"),
        (lambda bad: {"u": f"https://a.example/{bad}"}, "url"),
        (lambda bad: {"u": f"https://a.exa{bad}mple/"}, "url"),
        (lambda bad: {"d": f"a.example{bad}"}, "domain"),
        (lambda bad: {"k": f"key{bad}"}, "key"),
        (lambda bad: {"r": f"https://t.co/{bad}"}, "referrer"),
        (lambda bad: {"p": {"plan": f"pro{bad}"}}, "props.plan"),
        (lambda bad: {"p": json.dumps({"plan": f"pro{bad}"})}, "props.plan"),
        (lambda bad: {"p": {f"pl{bad}an": "pro"}}, "props.pl{bad}an"),
        (lambda bad: {"user_agent": f"Mozilla{bad}"}, "user_agent"),
        (lambda bad: {"visitor_id": f"v{bad}"}, "visitor_id"),
        (lambda bad: {"id": f"order-{bad}"}, "id"),
        (lambda bad: {"ip": f"203.0.113.7{bad}"}, "ip"),
    ],
)
def test_text_postgresql_cannot_store_is_refused_naming_the_field(
    fields: Callable[[str], dict[str, object]], named: str, bad: str
) -> None:
    with pytest.raises(InvalidEvent) as exc:
        parse_event({**BATCH, **fields(bad)}, batch=True, now=1_765_000_000)

    assert str(exc.value) == f"{named.format(bad=bad)}: contains a NUL or an unpaired surrogate, which cannot be stored"


def test_a_surrogate_pair_from_json_is_one_character_and_storable() -> None:
    event = parse_event(json.loads('{"n": "pageview", "u": "https://a.example/\\ud83d\\ude00", "d": "a.example"}'))

    assert event.url == "https://a.example/\U0001f600"
    assert not unstorable(event.url)
    assert unstorable("\ud83d\ude00")  # the same pair left as two code points has no UTF-8 form


# Any code point, surrogates included, with the ones that matter drawn often.
any_text = st.text(st.characters(exclude_categories=()) | st.sampled_from(["\x00", "\ud800", "\udfff", "é", "a"]))


def has_utf_8_form(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@given(any_text)
def test_unstorable_is_true_exactly_for_text_with_a_nul_or_no_utf_8_form(text: str) -> None:
    assert unstorable(text) == ("\x00" in text or not has_utf_8_form(text))
