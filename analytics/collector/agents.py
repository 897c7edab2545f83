"""User agents in the web process: browser, OS, device class and bot flag, parsed once per
distinct agent; the screen width's class. The raw user agent is never stored."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import ua_parser

_BOT_PATTERN = re.compile(
    r"(?<!cu)bot\b|bot/|crawl|spider|slurp|headless|phantomjs|lighthouse|pingdom|uptime|monitor|preview|"
    r"facebookexternalhit|python-requests|python-urllib|aiohttp|curl/|wget/|go-http-client|okhttp|"
    r"java/|axios/|node-fetch|undici|scrapy|httpclient|libwww|feedfetcher|mediapartners|apis-google|"
    r"bingpreview|yahoo! slurp|selenium|puppeteer|playwright",
    re.IGNORECASE,
)
_BROWSER_NAMES = {
    "Mobile Safari": "Safari",
    "Mobile Safari UI/WKWebView": "Safari",
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "Chrome Webview",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Edge Mobile": "Microsoft Edge",
    "Edge": "Microsoft Edge",
    "Opera Mobile": "Opera",
    "Samsung Internet": "Samsung Internet",
    "Other": "",
}
_OS_NAMES = {
    "Mac OS X": "Mac",
    "Linux": "GNU/Linux",
    "Ubuntu": "GNU/Linux",
    "Fedora": "GNU/Linux",
    "Debian": "GNU/Linux",
    "Other": "",
}
_MOBILE_OS = frozenset({"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Symbian OS", "Firefox OS"})


@dataclass(frozen=True)
class Agent:
    browser: str
    browser_version: str
    os: str
    os_version: str
    device: str  # Desktop, Mobile, Tablet or '' when unknown
    bot: bool


def _version(major: str | None, minor: str | None) -> str:
    if not major:
        return ""
    return f"{major}.{minor}" if minor else major


@functools.lru_cache(maxsize=8192)
def parse_user_agent(user_agent: str) -> Agent:
    if not user_agent:
        return Agent("", "", "", "", "", bot=False)
    result = ua_parser.parse(user_agent[:1000])
    device_family = result.device.family if result.device else ""
    browser = result.user_agent.family if result.user_agent else ""
    bot = device_family == "Spider" or bool(_BOT_PATTERN.search(user_agent))
    os_family = result.os.family if result.os else ""
    lower = user_agent.lower()
    if (
        device_family == "iPad"
        or "tablet" in device_family.lower()
        or "kindle" in lower
        or "silk/" in lower
        or (os_family == "Android" and "mobile" not in lower)
    ):
        device = "Tablet"
    elif os_family in _MOBILE_OS or "mobi" in lower or device_family in {"iPhone", "iPod"}:
        device = "Mobile"
    elif browser or os_family:
        device = "Desktop"
    else:
        device = ""
    return Agent(
        browser=_BROWSER_NAMES.get(browser, browser),
        browser_version=_version(result.user_agent.major, result.user_agent.minor) if result.user_agent else "",
        os=_OS_NAMES.get(os_family, os_family),
        os_version=_version(result.os.major, result.os.minor) if result.os else "",
        device=device,
        bot=bot,
    )


def screen_class(width: float | None) -> str:
    if width is None or width <= 0:
        return ""
    if width < 576:
        return "mobile"
    if width < 992:
        return "tablet"
    if width < 1440:
        return "laptop"
    return "desktop"
