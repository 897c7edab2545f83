"""Enrichment in the web process: the page URL, the referrer's source and channel, the country.

Pure computation, cached per process where values repeat. The user agent is parsed in
``analytics.collector.agents`` and the visitor id keyed in ``analytics.collector.visitors``;
the client address never leaves the collector: only the country, the visitor id and the
parsed browser, OS and device do.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import iptocc

from analytics.payloads import unstorable

MAX_URL_LENGTH = 2000

# Source tables ----------------------------------------------------------------

SEARCH = "search"
SOCIAL = "social"
EMAIL = "email"
PAID = "paid"
REFERRAL = "referral"
DIRECT = "direct"

# Exact host (without "www.") → (source name, kind). Checked before brands.
_HOSTS: dict[str, tuple[str, str]] = {
    "mail.google.com": ("Gmail", EMAIL),
    "inbox.google.com": ("Gmail", EMAIL),
    "news.google.com": ("Google News", REFERRAL),
    "outlook.live.com": ("Outlook", EMAIL),
    "outlook.office.com": ("Outlook", EMAIL),
    "outlook.office365.com": ("Outlook", EMAIL),
    "mail.yahoo.com": ("Yahoo Mail", EMAIL),
    "mail.proton.me": ("Proton Mail", EMAIL),
    "mail.protonmail.com": ("Proton Mail", EMAIL),
    "app.fastmail.com": ("Fastmail", EMAIL),
    "mail.aol.com": ("AOL Mail", EMAIL),
    "email.t-online.de": ("T-Online Mail", EMAIL),
    "mail.yandex.ru": ("Yandex Mail", EMAIL),
    "search.brave.com": ("Brave", SEARCH),
    "search.yahoo.com": ("Yahoo!", SEARCH),
    "search.aol.com": ("AOL", SEARCH),
    "duckduckgo.com": ("DuckDuckGo", SEARCH),
    "ecosia.org": ("Ecosia", SEARCH),
    "qwant.com": ("Qwant", SEARCH),
    "startpage.com": ("Startpage", SEARCH),
    "kagi.com": ("Kagi", SEARCH),
    "seznam.cz": ("Seznam", SEARCH),
    "search.seznam.cz": ("Seznam", SEARCH),
    "naver.com": ("Naver", SEARCH),
    "search.naver.com": ("Naver", SEARCH),
    "so.com": ("360 Search", SEARCH),
    "sogou.com": ("Sogou", SEARCH),
    "ask.com": ("Ask", SEARCH),
    "t.co": ("Twitter", SOCIAL),
    "x.com": ("Twitter", SOCIAL),
    "lnkd.in": ("LinkedIn", SOCIAL),
    "news.ycombinator.com": ("Hacker News", SOCIAL),
    "youtu.be": ("YouTube", SOCIAL),
    "t.me": ("Telegram", SOCIAL),
    "web.telegram.org": ("Telegram", SOCIAL),
    "web.whatsapp.com": ("WhatsApp", SOCIAL),
    "bsky.app": ("Bluesky", SOCIAL),
    "threads.net": ("Threads", SOCIAL),
    "mastodon.social": ("Mastodon", SOCIAL),
    "lobste.rs": ("Lobsters", SOCIAL),
    "vk.com": ("VKontakte", SOCIAL),
    "chatgpt.com": ("ChatGPT", REFERRAL),
    "chat.openai.com": ("ChatGPT", REFERRAL),
    "perplexity.ai": ("Perplexity", REFERRAL),
    "github.com": ("GitHub", REFERRAL),
}

# Second-level name (any TLD, any subdomain) → (source name, kind).
_BRANDS: dict[str, tuple[str, str]] = {
    "google": ("Google", SEARCH),
    "bing": ("Bing", SEARCH),
    "yahoo": ("Yahoo!", SEARCH),
    "yandex": ("Yandex", SEARCH),
    "baidu": ("Baidu", SEARCH),
    "duckduckgo": ("DuckDuckGo", SEARCH),
    "ecosia": ("Ecosia", SEARCH),
    "facebook": ("Facebook", SOCIAL),
    "fb": ("Facebook", SOCIAL),
    "instagram": ("Instagram", SOCIAL),
    "twitter": ("Twitter", SOCIAL),
    "linkedin": ("LinkedIn", SOCIAL),
    "reddit": ("Reddit", SOCIAL),
    "youtube": ("YouTube", SOCIAL),
    "pinterest": ("Pinterest", SOCIAL),
    "tiktok": ("TikTok", SOCIAL),
    "tumblr": ("Tumblr", SOCIAL),
    "quora": ("Quora", SOCIAL),
    "discord": ("Discord", SOCIAL),
    "snapchat": ("Snapchat", SOCIAL),
    "whatsapp": ("WhatsApp", SOCIAL),
    "telegram": ("Telegram", SOCIAL),
    "weibo": ("Weibo", SOCIAL),
    "xing": ("XING", SOCIAL),
}

# utm_source / source / ref values people write by hand → the table's name.
_SOURCE_ALIASES: dict[str, tuple[str, str]] = {
    "google": ("Google", SEARCH),
    "bing": ("Bing", SEARCH),
    "duckduckgo": ("DuckDuckGo", SEARCH),
    "yahoo": ("Yahoo!", SEARCH),
    "yandex": ("Yandex", SEARCH),
    "baidu": ("Baidu", SEARCH),
    "ecosia": ("Ecosia", SEARCH),
    "fb": ("Facebook", SOCIAL),
    "facebook": ("Facebook", SOCIAL),
    "ig": ("Instagram", SOCIAL),
    "instagram": ("Instagram", SOCIAL),
    "twitter": ("Twitter", SOCIAL),
    "x": ("Twitter", SOCIAL),
    "linkedin": ("LinkedIn", SOCIAL),
    "reddit": ("Reddit", SOCIAL),
    "hn": ("Hacker News", SOCIAL),
    "hackernews": ("Hacker News", SOCIAL),
    "youtube": ("YouTube", SOCIAL),
    "pinterest": ("Pinterest", SOCIAL),
    "tiktok": ("TikTok", SOCIAL),
    "mastodon": ("Mastodon", SOCIAL),
    "bluesky": ("Bluesky", SOCIAL),
    "newsletter": ("Newsletter", EMAIL),
    "email": ("Email", EMAIL),
    "gmail": ("Gmail", EMAIL),
}
_KIND_BY_NAME: dict[str, str] = dict([*_HOSTS.values(), *_BRANDS.values()])

PAID_MEDIUMS = frozenset(
    {"cpc", "ppc", "paid", "paidsearch", "paid_search", "paid-search", "paidsocial", "paid_social", "paid-social"}
    | {"cpm", "cpv", "cpa", "display", "banner", "retargeting", "sponsored", "ad", "ads"}
)
EMAIL_MEDIUMS = frozenset({"email", "e-mail", "e_mail", "mail", "newsletter"})
SOCIAL_MEDIUMS = frozenset({"social", "social-network", "social-media", "social_network", "social_media", "sm"})
# Click ids that advertising platforms append to paid clicks.
PAID_CLICK_IDS = frozenset({"gclid", "gbraid", "wbraid", "dclid", "msclkid", "fbclid", "ttclid", "twclid", "li_fat_id"})
_SECOND_LEVEL_SUFFIXES = frozenset({"co", "com", "org", "net", "ac", "gov", "edu", "ne", "or", "gob"})


def strip_www(host: str) -> str:
    return host[4:] if host.startswith("www.") else host


def lookup_host(host: str) -> tuple[str, str] | None:
    """The (source name, kind) of a referrer host (lower case, without ``www.``)."""
    found = _HOSTS.get(host)
    if found is not None:
        return found
    labels = host.split(".")
    if len(labels) < 2:
        return None
    base = labels[-3] if len(labels) >= 3 and labels[-2] in _SECOND_LEVEL_SUFFIXES else labels[-2]
    found = _BRANDS.get(base)
    if found is not None:
        return found
    parent = ".".join(labels[-2:])
    return _HOSTS.get(parent)


# Page URL and referrer --------------------------------------------------------


@dataclass(frozen=True)
class Page:
    hostname: str
    pathname: str
    utm_source: str
    utm_medium: str
    utm_campaign: str
    utm_content: str
    utm_term: str
    source_param: str  # utm_source, else source, else ref
    paid_click: bool
    # The first query parameter read above whose decoded value PostgreSQL cannot store ('%00'),
    # '' when none: the collector checked the raw URL, but decoding can add a NUL.
    unstorable: str = ""


# Pages and referrers repeat (a site's popular pages, the big search engines):
# both are parsed once per process and remembered. Long URLs (rare, and the
# ones that would make the caches big) are parsed every time.
_CACHED_URL_LENGTH = 512


def parse_page(url: str, *, hash_mode: bool = False) -> Page:
    if len(url) > _CACHED_URL_LENGTH:
        return _parse_page(url, hash_mode)
    return _cached_page(url, hash_mode)


def _query_pairs(query: str) -> list[tuple[str, str]]:
    """``parse_qsl(query, keep_blank_values=True)``, without its cost when nothing is quoted."""
    if "%" in query or "+" in query:
        return parse_qsl(query, keep_blank_values=True)
    pairs = []
    for item in query.split("&"):
        if item:
            name, _, value = item.partition("=")
            pairs.append((name, value))
    return pairs


def _parse_page(url: str, hash_mode: bool) -> Page:
    parts = urlsplit(url)
    hostname = strip_www((parts.hostname or "").lower())
    pathname = parts.path or "/"
    if hash_mode and parts.fragment:
        pathname = f"{pathname}#{parts.fragment}"
    params: dict[str, str] = {}
    click = False
    if parts.query:
        for name, value in _query_pairs(parts.query):
            key = name.lower()
            if key in PAID_CLICK_IDS:
                click = True
            if key not in params and value.strip():
                params[key] = value.strip()[:500]
    utm_source = params.get("utm_source", "")
    source_param = utm_source or params.get("source", "") or params.get("ref", "")
    bad = ""
    if "%" in parts.query:
        bad = next((name for name in _READ_PARAMS if unstorable(params.get(name, ""))), "")
    return Page(
        hostname=hostname[:253],
        pathname=pathname[:MAX_URL_LENGTH],
        utm_source=utm_source,
        utm_medium=params.get("utm_medium", ""),
        utm_campaign=params.get("utm_campaign", ""),
        utm_content=params.get("utm_content", ""),
        utm_term=params.get("utm_term", ""),
        source_param=source_param,
        paid_click=click,
        unstorable=bad,
    )


_READ_PARAMS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "source", "ref")


_cached_page = functools.lru_cache(maxsize=4096)(_parse_page)


@dataclass(frozen=True)
class Acquisition:
    referrer: str  # host and path, no scheme, no query ('' when none or self)
    source: str  # display name ('' for direct)
    channel: str  # search, social, email, paid, referral or direct


def acquisition(referrer_url: str, page: Page) -> Acquisition:
    """Referrer → source and channel; a referrer from the page's own host counts as direct."""
    if len(referrer_url) > _CACHED_URL_LENGTH:
        return _acquisition(referrer_url, page.hostname, page.source_param, page.utm_medium, page.paid_click)
    return _cached_acquisition(referrer_url, page.hostname, page.source_param, page.utm_medium, page.paid_click)


def _acquisition(referrer_url: str, hostname: str, source_param: str, utm_medium: str, paid_click: bool) -> Acquisition:
    referrer = ""
    ref_source = ""
    ref_kind = ""
    if referrer_url:
        parts = urlsplit(referrer_url)
        host = strip_www((parts.hostname or "").lower())
        if host and host != hostname:
            path = parts.path.rstrip("/")
            referrer = f"{host}{path}"[:MAX_URL_LENGTH]
            known = lookup_host(host)
            ref_source, ref_kind = known if known is not None else (host, REFERRAL)
    source, kind = ref_source, ref_kind
    if source_param:
        alias = _SOURCE_ALIASES.get(source_param.lower())
        if alias is not None:
            source, kind = alias
        else:
            source = source_param
            kind = _KIND_BY_NAME.get(source, ref_kind if source == ref_source else REFERRAL)
    medium = utm_medium.lower()
    if medium in PAID_MEDIUMS or paid_click:
        channel = PAID
    elif medium in EMAIL_MEDIUMS or kind == EMAIL:
        channel = EMAIL
    elif kind == SEARCH:
        channel = SEARCH
    elif kind == SOCIAL or medium in SOCIAL_MEDIUMS:
        channel = SOCIAL
    elif source:
        channel = REFERRAL
    else:
        channel = DIRECT
    return Acquisition(referrer=referrer, source=source[:500], channel=channel)


_cached_acquisition = functools.lru_cache(maxsize=4096)(_acquisition)


def country(address: str) -> str:
    """ISO 3166-1 alpha-2 code of the address, '' when unknown or not an address."""
    if not address:
        return ""
    try:
        return iptocc.country_code(address) or ""
    except (ValueError, TypeError):
        return ""
