"""Enrichment: page URL, referrer → source and channel, user agent, screen, country, visitor id, salts."""

from __future__ import annotations

import datetime as dt
import hashlib
from urllib.parse import parse_qsl

import pytest

from analytics.collector import enrich, visitors
from analytics.collector.agents import parse_user_agent, screen_class
from analytics.collector.enrich import acquisition, parse_page

CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 16_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.0 Mobile/15E148 Safari/604.1"
)
ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0"


def test_it_splits_the_page_url_into_hostname_path_and_utm_fields() -> None:
    page = parse_page(
        "https://www.Shop.example/pricing?utm_source=news&utm_medium=email&utm_campaign=spring"
        "&utm_content=hero&utm_term=boots#top"
    )

    assert (page.hostname, page.pathname) == ("shop.example", "/pricing")
    assert (page.utm_source, page.utm_medium, page.utm_campaign) == ("news", "email", "spring")
    assert (page.utm_content, page.utm_term) == ("hero", "boots")


def test_it_keeps_the_fragment_in_hash_routing_mode() -> None:
    assert parse_page("https://app.example/#/settings", hash_mode=True).pathname == "/#/settings"
    assert parse_page("https://app.example/#/settings").pathname == "/"


@pytest.mark.parametrize(
    "param", ["utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "source", "ref"]
)
def test_it_names_a_read_query_parameter_whose_decoded_value_holds_a_nul(param: str) -> None:
    assert parse_page(f"https://a.example/?x=1&{param}=a%00b").unstorable == param
    assert parse_page(f"https://a.example/?{param}=ab").unstorable == ""


def test_an_encoded_nul_it_does_not_decode_and_an_encoded_surrogate_are_storable() -> None:
    page = parse_page("https://a.example/a%00b?x=%00&utm_term=%ED%A0%80")

    assert (page.pathname, page.utm_term, page.unstorable) == ("/a%00b", "\ufffd" * 3, "")


def test_it_takes_ref_and_source_parameters_as_the_source() -> None:
    assert parse_page("https://a.example/?ref=producthunt").source_param == "producthunt"
    assert parse_page("https://a.example/?source=podcast&ref=x").source_param == "podcast"
    assert acquisition("", parse_page("https://a.example/?ref=producthunt")).source == "producthunt"


@pytest.mark.parametrize(
    ("referrer", "url", "source", "channel"),
    [
        ("https://www.google.com/", "https://a.example/", "Google", "search"),
        ("https://www.google.co.uk/search?q=x", "https://a.example/", "Google", "search"),
        ("https://duckduckgo.com/", "https://a.example/", "DuckDuckGo", "search"),
        ("https://t.co/abc", "https://a.example/", "Twitter", "social"),
        ("https://l.facebook.com/l.php", "https://a.example/", "Facebook", "social"),
        ("https://news.ycombinator.com/item?id=1", "https://a.example/", "Hacker News", "social"),
        ("https://mail.google.com/mail/u/0/", "https://a.example/", "Gmail", "email"),
        ("https://blog.example.org/post", "https://a.example/", "blog.example.org", "referral"),
        ("", "https://a.example/", "", "direct"),
        ("https://a.example/other", "https://a.example/", "", "direct"),
        ("https://www.a.example/other", "https://a.example/", "", "direct"),
        ("https://www.google.com/", "https://a.example/?utm_medium=cpc", "Google", "paid"),
        ("", "https://a.example/?gclid=abc", "", "paid"),
        ("", "https://a.example/?utm_source=fb", "Facebook", "social"),
        ("", "https://a.example/?utm_source=newsletter&utm_medium=email", "Newsletter", "email"),
        ("", "https://a.example/?utm_source=partner-site", "partner-site", "referral"),
    ],
)
def test_it_names_the_source_and_channel(referrer: str, url: str, source: str, channel: str) -> None:
    result = acquisition(referrer, parse_page(url))

    assert (result.source, result.channel) == (source, channel)


def test_it_keeps_the_referrer_without_scheme_or_query() -> None:
    result = acquisition("https://www.blog.example.org/posts/42/?q=secret#x", parse_page("https://a.example/"))

    assert result.referrer == "blog.example.org/posts/42"


@pytest.mark.parametrize(
    ("agent", "browser", "os", "device"),
    [
        (CHROME_MAC, "Chrome", "Mac", "Desktop"),
        (IPHONE, "Safari", "iOS", "Mobile"),
        (IPAD, "Safari", "iOS", "Tablet"),
        (ANDROID_TABLET, "Chrome", "Android", "Tablet"),
        (FIREFOX_WINDOWS, "Firefox", "Windows", "Desktop"),
    ],
)
def test_it_parses_browser_os_and_device(agent: str, browser: str, os: str, device: str) -> None:
    parsed = parse_user_agent(agent)

    assert (parsed.browser, parsed.os, parsed.device, parsed.bot) == (browser, os, device, False)
    assert parsed.browser_version


@pytest.mark.parametrize(
    "agent",
    [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
        "curl/8.5.0",
        "python-requests/2.31.0",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    ],
)
def test_it_flags_bots(agent: str) -> None:
    assert parse_user_agent(agent).bot is True


SCREENS = [(None, ""), (0, ""), (375, "mobile"), (575, "mobile"), (576, "tablet"), (991, "tablet")]
SCREENS += [(992, "laptop"), (1439, "laptop"), (1440, "desktop"), (2560, "desktop")]


@pytest.mark.parametrize(("width", "screen"), SCREENS)
def test_it_classifies_the_screen_by_width(width: float | None, screen: str) -> None:
    assert screen_class(width) == screen


def test_it_finds_the_country_of_an_address_offline() -> None:
    assert enrich.country("81.2.69.142") == "GB"
    assert enrich.country("8.8.8.8") == "US"
    assert enrich.country("127.0.0.1") == ""
    assert enrich.country("not-an-address") == ""


def test_the_visitor_id_is_a_signed_64_bit_keyed_hash_of_salt_site_address_and_agent() -> None:
    salt = bytes(32)
    base = visitors.visitor_id(salt, 1, "203.0.113.7", CHROME_MAC)

    assert base == visitors.visitor_id(salt, 1, "203.0.113.7", CHROME_MAC)
    assert -(2**63) <= base < 2**63
    others = {
        visitors.visitor_id(salt, 2, "203.0.113.7", CHROME_MAC),
        visitors.visitor_id(salt, 1, "203.0.113.8", CHROME_MAC),
        visitors.visitor_id(salt, 1, "203.0.113.7", IPHONE),
        visitors.visitor_id(b"\x01" * 32, 1, "203.0.113.7", CHROME_MAC),
    }
    assert base not in others
    assert len(others) == 4


def test_salts_are_shared_through_redis_and_old_ones_are_deleted() -> None:
    client = visitors.data_redis()
    today = dt.date(2026, 3, 10)
    client.delete(visitors.SALTS_KEY)
    client.hset(visitors.SALTS_KEY, "2026-03-07", "00" * 32)
    client.hset(visitors.SALTS_KEY, "2026-03-09", "11" * 32)

    first, second = visitors.Salts(), visitors.Salts()
    first.load(today)
    second.load(today)
    deleted = visitors.rotate(today)

    assert first.for_day(today) == second.for_day(today)
    assert first.for_day(today - dt.timedelta(days=1)) == bytes.fromhex("11" * 32)
    assert first.fresh(today) is True
    assert first.fresh(today + dt.timedelta(days=1)) is False
    assert deleted == ["2026-03-07"]
    assert sorted(visitors._str(field) for field in client.hkeys(visitors.SALTS_KEY)) == ["2026-03-09", "2026-03-10"]
    client.delete(visitors.SALTS_KEY)


def test_the_visitor_id_is_blake2b_keyed_by_the_salt_of_site_address_nul_and_agent() -> None:
    # The definition the worker's visits rely on: it must not change across releases.
    salt = bytes(range(32))
    for site_id, address, agent in [(1, "203.0.113.7", CHROME_MAC), (-5, "2001:db8::1", ""), (2**40, "", "\ud800é")]:
        digest = hashlib.blake2b(key=salt, digest_size=8)
        digest.update(site_id.to_bytes(8, "big", signed=True))
        digest.update(address.encode("utf-8", "replace") + b"\x00" + agent.encode("utf-8", "replace"))
        expected = int.from_bytes(digest.digest(), "big", signed=True)

        assert visitors.visitor_id(salt, site_id, address, agent) == expected
        assert visitors.visitor_id(salt, site_id, address, agent) == expected  # from the per-site hasher cache


def test_the_utc_day_of_seconds_and_of_microseconds() -> None:
    midnight = dt.datetime(2026, 3, 10, tzinfo=dt.UTC).timestamp()

    assert visitors.utc_day(midnight) == dt.date(2026, 3, 10)
    assert visitors.utc_day(midnight - 0.5) == dt.date(2026, 3, 9)
    assert visitors.utc_day_us(int(midnight) * 1_000_000) == dt.date(2026, 3, 10)
    assert visitors.utc_day_us(int(midnight) * 1_000_000 - 1) == dt.date(2026, 3, 9)
    assert visitors.utc_day(0) == dt.date(1970, 1, 1)


@pytest.mark.parametrize(
    "query",
    ["", "a=1", "a=1&b=2", "a", "=b", "a=b=c", "&&a=1&", "utm_source=x+y", "utm_source=%20x%20", "a=%zz", "a=1;b=2"],
)
def test_the_query_string_is_split_as_parse_qsl_does(query: str) -> None:
    assert [tuple(pair) for pair in enrich._query_pairs(query)] == parse_qsl(query, keep_blank_values=True)


def test_long_and_repeated_urls_parse_the_same() -> None:
    url = "https://www.shop.example/a?utm_source=News&gclid=1&utm_medium=cpc"
    long_url = url + "&x=" + "y" * 600

    assert parse_page(url) == parse_page(url) == parse_page(long_url)
    assert acquisition("https://t.co/x", parse_page(url)) == acquisition("https://t.co/x", parse_page(long_url))
    assert acquisition("https://t.co/" + "x" * 600, parse_page("https://a.example/")).source == "Twitter"
