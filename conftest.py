"""Session-wide test set-up: the embedded servers (when no server URLs are set)."""

from __future__ import annotations

import pytest

from spinnakr import embedded


def pytest_configure(config: pytest.Config) -> None:
    # Before pytest-django creates the test database, so it finds a server.
    embedded.acquire()


def pytest_unconfigure(config: pytest.Config) -> None:
    embedded.release()


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``@pytest.mark.anyio``) run on asyncio, as uvicorn does."""
    return "asyncio"
