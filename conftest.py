"""Session-wide test set-up: the embedded servers (when no server URLs are set), and the
browser fixtures of spinnakr/tests/browser.py for every app's tests."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from channels.layers import channel_layers
from django.conf import settings
from kombu import Connection, Queue

from spinnakr import embedded, metrics
from spinnakr.embedded.paths import var_dir

pytest_plugins = ["spinnakr.tests.browser"]


def pytest_configure(config: pytest.Config) -> None:
    # Before pytest-django creates the test database, so it finds a server.
    embedded.acquire()


def pytest_unconfigure(config: pytest.Config) -> None:
    embedded.release()
    # The session's metrics directory (spinnakr.metrics names one under pytest), unless it was given.
    if metrics.MULTIPROC_DIR.parent == var_dir() / "metrics-test":
        shutil.rmtree(metrics.MULTIPROC_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def fresh_channel_layer() -> Iterator[None]:
    """Each test gets its own channel layer object: channels_redis binds a layer's receive lock
    to the event loop of its first receiver and lets it go only when the last one returns, so a
    receive left pending when an earlier test's loop closed would break every later one."""
    yield
    channel_layers.backends.clear()


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``@pytest.mark.anyio``) run on asyncio, as uvicorn does."""
    return "asyncio"


@pytest.fixture
def broker_queue() -> Iterator[tuple[Any, str]]:
    """A scratch queue on the broker, deleted after the test: (a kombu channel, its name)."""
    name = f"{settings.EVENTS_QUEUE}.scratch-{uuid.uuid4().hex[:8]}"
    with Connection(str(settings.CELERY_BROKER_URL)) as connection:
        channel = connection.default_channel
        bound = Queue(name, routing_key=name)(channel)
        bound.declare()
        yield channel, name
        bound.delete()
