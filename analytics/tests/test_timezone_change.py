"""A site's timezone changed from any place a person changes it (the settings page, the Sites API,
the admin) queues a rebuild of its rollups once the change commits, through
``accounts.signals.site_timezone_changed``; the rebuild itself is tested in test_rebuild."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.conf import settings
from django.test import Client
from kombu import Connection

from accounts.apikeys import create_api_key
from accounts.models import User
from analytics.jobs import REBUILD_ROLLUPS
from analytics.tests.conftest import purge_broker
from analytics.tests.dashboard_fixtures import PASSWORD, Cast, cast
from spinnakr.tests.waiting import wait_for

__all__ = ["cast"]

TOKYO = "Asia/Tokyo"


def take_queued_tasks() -> list[tuple[str, list[object]]]:
    """Every task waiting on the default queue, taken off it: (name, arguments)."""
    (queue,) = [queue for queue in settings.CELERY_TASK_QUEUES if queue.name == settings.DEFAULT_QUEUE]
    taken: list[tuple[str, list[object]]] = []
    with Connection(str(settings.CELERY_BROKER_URL)) as connection:
        bound = queue(connection.default_channel)
        while (message := bound.get(no_ack=True)) is not None:
            taken.append((message.headers["task"], message.decode()[0]))
    return taken


@pytest.fixture
def queued_rebuilds(cast: Cast) -> Iterator[Callable[[], list[list[object]]]]:
    """Waits for the first rebuild the test queued and answers the arguments of all of them."""
    purge_broker()

    def wait() -> list[list[object]]:
        taken: list[tuple[str, list[object]]] = []

        def a_rebuild_was_taken() -> bool:
            taken.extend(take_queued_tasks())
            return any(name == REBUILD_ROLLUPS for name, _ in taken)

        wait_for(a_rebuild_was_taken, timeout=10)
        return [arguments for name, arguments in taken if name == REBUILD_ROLLUPS]

    yield wait
    purge_broker()


def test_the_settings_page_queues_a_rebuild_when_the_timezone_changes_and_only_then(
    cast: Cast, client: Client, queued_rebuilds: Callable[[], list[list[object]]]
) -> None:
    client.force_login(cast.owner)
    form = {"domain": cast.site.domain, "allowed_origins": "", "public": ""}

    unchanged = client.post(f"/sites/{cast.site.domain}/settings/", {**form, "timezone": cast.site.timezone})
    changed = client.post(f"/sites/{cast.site.domain}/settings/", {**form, "timezone": TOKYO})

    assert (unchanged.status_code, changed.status_code) == (302, 302)
    assert queued_rebuilds() == [[cast.site.id, None]]


def test_the_sites_api_queues_a_rebuild_when_the_timezone_changes(
    cast: Cast, client: Client, queued_rebuilds: Callable[[], list[list[object]]]
) -> None:
    _, key = create_api_key(cast.account, "CI", ["sites:write"], created_by=cast.owner)

    response = client.put(
        f"/api/v1/sites/{cast.site.domain}",
        {"timezone": TOKYO},
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )

    assert response.status_code == 200
    assert queued_rebuilds() == [[cast.site.id, None]]


def test_the_admin_queues_a_rebuild_when_the_timezone_changes(
    cast: Cast, client: Client, queued_rebuilds: Callable[[], list[list[object]]]
) -> None:
    client.force_login(User.objects.create_superuser("staff@spinnakr.test", PASSWORD))

    response = client.post(
        f"/admin/accounts/site/{cast.site.pk}/change/",
        {"domain": cast.site.domain, "timezone": TOKYO, "allowed_origins": "", "public": ""},
    )

    assert response.status_code == 302
    assert queued_rebuilds() == [[cast.site.id, None]]
