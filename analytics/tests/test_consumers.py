"""The live dashboard consumers, through Channels' WebsocketCommunicator on the real Redis channel layer."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.backends.db import SessionStore
from django.db import connections

from accounts.access import SESSION_ACCOUNT_KEY
from accounts.apikeys import create_api_key, revoke_api_key
from accounts.models import Membership, Scope
from analytics import routes
from analytics.dashboard import sharing
from analytics.live import consumers as live
from analytics.models import SharedLink
from analytics.tests.dashboard_fixtures import Cast, cast, session_cookie
from spinnakr.tests.scrape import local, value

__all__ = ["cast"]

pytestmark = pytest.mark.anyio
application = AuthMiddlewareStack(URLRouter(routes.websocket_urlpatterns))


_opened: list[WebsocketCommunicator] = []


@pytest.fixture(autouse=True)
async def close_consumer_connections() -> AsyncIterator[None]:
    """Consumers reach the database from asgiref's worker thread; close it so the test database can go."""
    yield
    # End every consumer (a refused one too keeps listening on the channel layer until its client
    # disconnects) and this loop's channel-layer pumps before the loop closes: a task left
    # waiting on Redis would hang the loop's shutdown and with it the next async test.
    opened = list(_opened)
    _opened.clear()
    for socket in opened:
        with contextlib.suppress(Exception):
            await socket.disconnect(timeout=2)
    await live.close_hub()
    await sync_to_async(connections.close_all)()


def delta(site_id: int, pageviews: int = 2, batch_id: str = "b1") -> dict[str, Any]:
    return {
        "type": "live.delta",
        "site_id": site_id,
        "batch_id": batch_id,
        "newest_ts": 1_764_480_000_000,
        "counts": {"pageviews": pageviews, "events": pageviews + 1, "visits": 1, "visitors": 1},
        "visitors_now": 3,
        "events": [
            {
                "ts": 1_764_480_000_000,
                "name": "Signup",
                "pathname": "/pricing",
                "hostname": "dash.example",
                "referrer_source": "Google",
                "country": "DE",
                "browser": "Firefox",
                "os": "Linux",
                "device": "Desktop",
                "props": {"plan": "pro"},
            }
        ],
    }


def communicator(path: str, cookie: str | None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    socket = WebsocketCommunicator(application, path, headers=headers)
    _opened.append(socket)
    return socket


async def connect(path: str, cookie: str | None) -> tuple[WebsocketCommunicator, bool, Any]:
    socket = communicator(path, cookie)
    connected, code = await socket.connect(timeout=5)
    return socket, connected, code


async def test_it_forwards_a_live_delta_to_a_member(cast: Cast) -> None:
    cookie = await sync_to_async(session_cookie)(cast.teammate)
    socket, connected, _ = await connect(f"/ws/sites/{cast.site.domain}/", cookie)
    assert connected
    hello = await socket.receive_json_from(timeout=5)
    assert hello["type"] == "hello"
    assert hello["domains"] == ["dash.example"]
    assert hello["read_only"] is False
    await get_channel_layer().group_send(live.group_name(cast.site.pk), delta(cast.site.pk, pageviews=7))
    message = await socket.receive_json_from(timeout=5)
    assert message["type"] == "delta"
    assert message["domain"] == "dash.example"
    assert message["counts"]["pageviews"] == 7
    assert message["visitors_now"] == 3
    assert message["events"][0]["props"] == {"plan": "pro"}
    await socket.disconnect()


async def test_it_refuses_an_outsider_before_accepting(cast: Cast) -> None:
    cookie = await sync_to_async(session_cookie)(cast.outsider)
    _socket, connected, code = await connect(f"/ws/sites/{cast.site.domain}/", cookie)
    assert not connected
    assert code == live.CLOSE_NOT_FOUND


async def test_it_refuses_an_anonymous_visitor_of_a_private_site(cast: Cast) -> None:
    _socket, connected, code = await connect(f"/ws/sites/{cast.site.domain}/", None)
    assert (connected, code) == (False, live.CLOSE_NOT_FOUND)


async def test_it_refuses_an_unknown_domain(cast: Cast) -> None:
    cookie = await sync_to_async(session_cookie)(cast.owner)
    _socket, connected, code = await connect("/ws/sites/nobody.example/", cookie)
    assert (connected, code) == (False, live.CLOSE_NOT_FOUND)


async def test_it_lets_anyone_watch_a_public_site_read_only(cast: Cast) -> None:
    await sync_to_async(sharing.set_site_public)(cast.site, True)
    socket, connected, _ = await connect(f"/ws/sites/{cast.site.domain}/", None)
    assert connected
    hello = await socket.receive_json_from(timeout=5)
    assert hello["read_only"] is True
    await get_channel_layer().group_send(live.group_name(cast.site.pk), delta(cast.site.pk))
    assert (await socket.receive_json_from(timeout=5))["type"] == "delta"
    await socket.disconnect()


def unlocked_session(link: SharedLink) -> str:
    session = SessionStore()
    sharing.unlock(session, link)
    return session_cookie(session=session)


async def test_it_lets_the_holder_of_an_unlocked_shared_link_watch(cast: Cast) -> None:
    link = await sync_to_async(sharing.create_shared_link)(cast.site, "Investors", "s3cret-pass")
    cookie = await sync_to_async(unlocked_session)(link)
    socket, connected, _ = await connect(f"/ws/sites/{cast.site.domain}/", cookie)
    assert connected
    assert (await socket.receive_json_from(timeout=5))["read_only"] is True
    await socket.disconnect()


async def test_a_shared_link_does_not_open_another_site(cast: Cast) -> None:
    link = await sync_to_async(sharing.create_shared_link)(cast.site, "Investors")
    cookie = await sync_to_async(unlocked_session)(link)
    _socket, connected, code = await connect(f"/ws/sites/{cast.other_site.domain}/", cookie)
    assert (connected, code) == (False, live.CLOSE_NOT_FOUND)


async def test_it_closes_the_socket_of_a_deleted_shared_link(cast: Cast, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "RECHECK_SECONDS", 0.0)
    link = await sync_to_async(sharing.create_shared_link)(cast.site, "Agency")
    cookie = await sync_to_async(unlocked_session)(link)
    socket, connected, _ = await connect(f"/ws/sites/{cast.site.domain}/", cookie)
    assert connected
    await socket.receive_json_from(timeout=5)
    await sync_to_async(sharing.delete_shared_link)(cast.site, link.slug)
    await get_channel_layer().group_send(live.group_name(cast.site.pk), delta(cast.site.pk))
    closed = await socket.receive_output(timeout=5)
    assert (closed["type"], closed["code"]) == ("websocket.close", live.CLOSE_FORBIDDEN)


async def test_a_member_receives_nothing_of_another_site(cast: Cast) -> None:
    cookie = await sync_to_async(session_cookie)(cast.owner)
    socket, _connected, _ = await connect(f"/ws/sites/{cast.site.domain}/", cookie)
    await socket.receive_json_from(timeout=5)
    await get_channel_layer().group_send(live.group_name(cast.other_site.pk), delta(cast.other_site.pk))
    assert await socket.receive_nothing(timeout=0.5)
    await socket.disconnect()


async def test_the_overview_socket_carries_every_site_of_the_user(cast: Cast) -> None:
    cookie = await sync_to_async(session_cookie)(cast.owner)
    socket, connected, _ = await connect("/ws/sites/", cookie)
    assert connected
    hello = await socket.receive_json_from(timeout=5)
    assert hello["domains"] == ["blog.dash.example", "dash.example"]
    layer = get_channel_layer()
    await layer.group_send(live.group_name(cast.other_site.pk), delta(cast.other_site.pk, pageviews=1))
    await layer.group_send(live.group_name(cast.site.pk), delta(cast.site.pk, pageviews=5))
    first = await socket.receive_json_from(timeout=5)
    second = await socket.receive_json_from(timeout=5)
    assert {(first["domain"], first["counts"]["pageviews"]), (second["domain"], second["counts"]["pageviews"])} == {
        ("blog.dash.example", 1),
        ("dash.example", 5),
    }
    await socket.disconnect()


async def test_the_overview_socket_of_an_outsider_hears_nothing_of_other_accounts(cast: Cast) -> None:
    cookie = await sync_to_async(session_cookie)(cast.outsider)
    socket, connected, _ = await connect("/ws/sites/", cookie)
    assert connected
    assert (await socket.receive_json_from(timeout=5))["domains"] == ["elsewhere.example"]
    await get_channel_layer().group_send(live.group_name(cast.site.pk), delta(cast.site.pk))
    assert await socket.receive_nothing(timeout=0.5)
    await socket.disconnect()


async def test_the_overview_socket_refuses_an_anonymous_visitor(cast: Cast) -> None:
    _socket, connected, code = await connect("/ws/sites/", None)
    assert (connected, code) == (False, live.CLOSE_NOT_FOUND)


def feed(domain: str, raw_key: str | None) -> WebsocketCommunicator:
    headers = [(b"host", b"testserver")]
    if raw_key is not None:
        headers.append((b"authorization", f"Bearer {raw_key}".encode()))
    socket = WebsocketCommunicator(application, f"/ws/feed/{domain}/", headers=headers)
    _opened.append(socket)
    return socket


async def new_key(cast: Cast, scopes: list[str]) -> tuple[Any, str]:
    return await sync_to_async(create_api_key)(cast.account, "feed", scopes)


async def test_the_feed_carries_deltas_to_a_key_with_feed_read(cast: Cast) -> None:
    _, raw = await new_key(cast, [Scope.FEED_READ])
    socket = feed("dash.example", raw)
    connected, _ = await socket.connect(timeout=5)
    assert connected
    assert (await socket.receive_json_from(timeout=5))["domains"] == ["dash.example"]
    await get_channel_layer().group_send(live.group_name(cast.site.pk), delta(cast.site.pk, pageviews=4))
    message = await socket.receive_json_from(timeout=5)
    assert (message["type"], message["counts"]["pageviews"]) == ("delta", 4)
    assert message["events"][0]["name"] == "Signup"
    await socket.disconnect()


async def test_the_feed_refuses_a_missing_key(cast: Cast) -> None:
    assert await feed("dash.example", None).connect(timeout=5) == (False, live.CLOSE_UNAUTHORIZED)


async def test_the_feed_refuses_an_unknown_key(cast: Cast) -> None:
    _, raw = await new_key(cast, [Scope.FEED_READ])
    assert await feed("dash.example", raw[:-2] + "xx").connect(timeout=5) == (False, live.CLOSE_UNAUTHORIZED)


async def test_the_feed_refuses_a_key_without_the_scope(cast: Cast) -> None:
    _, raw = await new_key(cast, [Scope.STATS_READ])
    assert await feed("dash.example", raw).connect(timeout=5) == (False, live.CLOSE_FORBIDDEN)


async def test_the_feed_refuses_a_site_outside_the_keys_account(cast: Cast) -> None:
    _, raw = await new_key(cast, [Scope.FEED_READ])
    assert await feed("elsewhere.example", raw).connect(timeout=5) == (False, live.CLOSE_NOT_FOUND)


@pytest.mark.parametrize("domain", ["dash.example\x00", "dash.example\ud800"])
async def test_the_feed_answers_not_found_for_a_domain_no_site_can_hold(cast: Cast, domain: str) -> None:
    _, raw = await new_key(cast, [Scope.FEED_READ])
    assert await feed(domain, raw).connect(timeout=5) == (False, live.CLOSE_NOT_FOUND)


async def test_the_feed_closes_when_the_key_is_revoked(cast: Cast, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "RECHECK_SECONDS", 0.0)
    key, raw = await new_key(cast, [Scope.FEED_READ])
    socket = feed("dash.example", raw)
    assert (await socket.connect(timeout=5))[0]
    await socket.receive_json_from(timeout=5)
    await sync_to_async(revoke_api_key)(key)
    await get_channel_layer().group_send(live.group_name(cast.site.pk), delta(cast.site.pk))
    closed = await socket.receive_output(timeout=5)
    assert (closed["type"], closed["code"]) == ("websocket.close", live.CLOSE_UNAUTHORIZED)


async def test_the_overview_socket_follows_the_current_account_only(cast: Cast) -> None:
    await sync_to_async(Membership.objects.create)(account=cast.outsider_site.account, user=cast.owner, role="viewer")
    cookie = await sync_to_async(session_cookie)(cast.owner)
    session = SessionStore(session_key=cookie.removeprefix("sessionid="))
    await sync_to_async(session.__setitem__)(SESSION_ACCOUNT_KEY, str(cast.outsider_site.account.public_id))
    await sync_to_async(session.save)()
    socket, connected, _ = await connect("/ws/sites/", cookie)
    assert connected
    assert (await socket.receive_json_from(timeout=5))["domains"] == ["elsewhere.example"]
    await socket.disconnect()


def live_consumers(kind: str) -> float:
    return value(local(), "spinnakr_live_consumers", kind=kind)


async def test_an_open_dashboard_socket_is_counted_until_it_closes_and_a_refused_one_never(cast: Cast) -> None:
    before = await sync_to_async(live_consumers)("site")
    cookie = await sync_to_async(session_cookie)(cast.teammate)
    outsider = await sync_to_async(session_cookie)(cast.outsider)
    socket, connected, _ = await connect(f"/ws/sites/{cast.site.domain}/", cookie)
    _, refused, _ = await connect(f"/ws/sites/{cast.site.domain}/", outsider)
    assert connected
    assert not refused
    while_open = await sync_to_async(live_consumers)("site")

    await socket.disconnect()

    assert while_open == before + 1
    assert await sync_to_async(live_consumers)("site") == before
