"""Fixtures shared by the analytics tests."""

from __future__ import annotations

from analytics.tests.collector_fixtures import collector, strict_collector

__all__ = ["collector", "strict_collector"]
