"""OpenAPI shapes of the API (drf-spectacular serializers used only for the schema)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


def documented_paths(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """drf-spectacular hook: ``/api/…/`` paths (from ``/?$`` routes) documented without the slash."""
    out = []
    for path, *rest in endpoints:
        if isinstance(path, str) and path.startswith("/api/") and path.endswith("/") and len(path) > 1:
            path = path[:-1]
        out.append((path, *rest))
    return out


class Error(serializers.Serializer[Any]):
    error = serializers.CharField(help_text="What was wrong, naming the offending field or value.")


class Pagination(serializers.Serializer[Any]):
    limit = serializers.IntegerField(required=False, min_value=1, max_value=10000)
    offset = serializers.IntegerField(required=False, min_value=0)


class Include(serializers.Serializer[Any]):
    time_labels = serializers.BooleanField(required=False)
    total_rows = serializers.BooleanField(required=False)
    imports = serializers.BooleanField(required=False)
    comparisons = serializers.DictField(required=False, help_text='{"mode": "previous_period" | "year_over_year"}')


class QueryRequest(serializers.Serializer[Any]):
    site_id = serializers.CharField(help_text="The site's domain.")
    metrics = serializers.ListField(child=serializers.CharField(), min_length=1)
    date_range = serializers.JSONField(help_text='"day", "7d", …, "all", or ["2026-01-01", "2026-01-31"].')
    dimensions = serializers.ListField(child=serializers.CharField(), required=False)
    filters = serializers.ListField(child=serializers.JSONField(), required=False)
    order_by = serializers.ListField(child=serializers.ListField(child=serializers.CharField()), required=False)
    include = Include(required=False)
    pagination = Pagination(required=False)


class ResultRow(serializers.Serializer[Any]):
    metrics = serializers.ListField(child=serializers.JSONField())
    dimensions = serializers.ListField(child=serializers.JSONField())
    comparison = serializers.DictField(required=False)


class QueryResponse(serializers.Serializer[Any]):
    results = ResultRow(many=True)
    meta = serializers.DictField()
    query = serializers.DictField()


class V1Aggregate(serializers.Serializer[Any]):
    results = serializers.DictField(child=serializers.DictField())


class V1List(serializers.Serializer[Any]):
    results = serializers.ListField(child=serializers.DictField())


class Goal(serializers.Serializer[Any]):
    id = serializers.CharField()
    display_name = serializers.CharField()
    goal_type = serializers.ChoiceField(choices=["event", "page"])
    event_name = serializers.CharField(allow_null=True)
    page_path = serializers.CharField(allow_null=True)


class GoalCreate(serializers.Serializer[Any]):
    site_id = serializers.CharField()
    goal_type = serializers.ChoiceField(choices=["event", "page"])
    event_name = serializers.CharField(required=False)
    page_path = serializers.CharField(required=False)
    display_name = serializers.CharField(required=False)


class GoalList(serializers.Serializer[Any]):
    goals = Goal(many=True)
    meta = serializers.DictField()


class GoalDeleted(serializers.Serializer[Any]):
    deleted = serializers.BooleanField()


class Realtime(serializers.Serializer[Any]):
    visitors_now = serializers.IntegerField()
    top_pages = serializers.ListField(child=serializers.DictField())
    minutes = serializers.ListField(child=serializers.DictField())
