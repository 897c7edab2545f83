"""Per-site endpoints: goals (Plausible's goals API), realtime numbers and the dashboard export."""

from __future__ import annotations

import io
import zipfile
from typing import Any, ClassVar

from django.http import Http404, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Role
from analytics import fields
from analytics.api import schema
from analytics.api.base import APIBaseView, ZipRenderer, csv_cell, csv_response
from analytics.models import Goal
from analytics.query import QueryError, run_query, v1
from analytics.query.goals import create_goal, delete_goal, goal_json
from analytics.query.realtime import snapshot

GOAL_EXAMPLE = {"id": "1", "display_name": "Signup", "goal_type": "event", "event_name": "Signup", "page_path": None}


class GoalsView(APIBaseView):
    scopes = {"GET": ("stats:read", "sites:write"), "PUT": ("sites:write",)}
    roles = {"GET": Role.VIEWER, "PUT": Role.ADMIN}

    @extend_schema(
        operation_id="goals_list",
        summary="List a site's goals",
        parameters=[OpenApiParameter("site_id", str, required=True, description="The site's domain.")],
        responses={200: schema.GoalList, 401: schema.Error, 403: schema.Error, 404: schema.Error},
        examples=[
            OpenApiExample(
                "Goals",
                value={"goals": [GOAL_EXAMPLE], "meta": {"limit": 500, "after": None, "before": None}},
                response_only=True,
            )
        ],
        tags=["Goals"],
    )
    def get(self, request: Request) -> Response:
        site = self.site_for_request(request, request.query_params.get("site_id"))
        goals = [goal_json(g) for g in Goal.objects.filter(site=site).order_by("id")]
        data = {"goals": goals, "meta": {"limit": 500, "after": None, "before": None}}
        header = ["id", "display_name", "goal_type", "event_name", "page_path"]
        return csv_response(data, header, [[csv_cell(g[h]) for h in header] for g in goals])

    @extend_schema(
        operation_id="goals_put",
        summary="Find or create a goal",
        request=schema.GoalCreate,
        responses={200: schema.Goal, 400: schema.Error, 401: schema.Error, 403: schema.Error, 404: schema.Error},
        examples=[
            OpenApiExample(
                "Event goal",
                value={"site_id": "example.com", "goal_type": "event", "event_name": "Signup"},
                request_only=True,
            ),
            OpenApiExample("Goal", value=GOAL_EXAMPLE, response_only=True),
        ],
        tags=["Goals"],
    )
    def put(self, request: Request) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        site = self.site_for_request(request, data.get("site_id") or request.query_params.get("site_id"))
        goal, _ = create_goal(
            site, data.get("goal_type"), data.get("event_name"), data.get("page_path"), data.get("display_name")
        )
        return Response({"domain": site.domain, **goal_json(goal)})


class GoalDetailView(APIBaseView):
    scopes = {"DELETE": ("sites:write",)}
    roles = {"DELETE": Role.ADMIN}

    @extend_schema(
        operation_id="goals_delete",
        summary="Delete a goal",
        parameters=[OpenApiParameter("site_id", str, required=True, description="The site's domain (query or body).")],
        responses={200: schema.GoalDeleted, 401: schema.Error, 403: schema.Error, 404: schema.Error},
        examples=[OpenApiExample("Deleted", value={"deleted": True}, response_only=True)],
        tags=["Goals"],
    )
    def delete(self, request: Request, goal_id: str) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        site = self.site_for_request(request, data.get("site_id") or request.query_params.get("site_id"))
        if not delete_goal(site, goal_id):
            raise Http404("goal not found")
        return Response({"deleted": True})


class SiteRealtimeView(APIBaseView):
    @extend_schema(
        operation_id="site_realtime",
        summary="Visitors now, top pages now, the last 30 minutes per minute",
        responses={200: schema.Realtime, 401: schema.Error, 403: schema.Error, 404: schema.Error},
        examples=[
            OpenApiExample(
                "Now",
                value={
                    "visitors_now": 3,
                    "top_pages": [{"page": "/", "visitors": 2}],
                    "minutes": [{"minute": "2026-03-10T12:00:00Z", "pageviews": 4, "events": 5, "visitors": 2}],
                },
                response_only=True,
            )
        ],
        tags=["Realtime"],
    )
    def get(self, request: Request, domain: str) -> Response:
        site = self.site_for_request(request, domain)
        data = snapshot(site)
        header = ["minute", "pageviews", "events", "visitors"]
        return csv_response(data, header, [[m[h] for h in header] for m in data["minutes"]])


# (file name, dimension, metrics) of each breakdown's CSV, from the field registry.
EXPORT_BREAKDOWNS = fields.EXPORTS


class ExportView(APIBaseView):
    renderer_classes: ClassVar[list[Any]] = [ZipRenderer, JSONRenderer]  # type: ignore[misc]

    @extend_schema(
        operation_id="site_export",
        summary="Dashboard export: a ZIP of CSV files",
        parameters=[
            OpenApiParameter(
                "period",
                str,
                description="As in Stats API v1 (default 30d).",
                examples=[OpenApiExample("30 days", value="30d")],
            ),
            OpenApiParameter("date", str, description="Reference day, or START,END for period=custom."),
            OpenApiParameter("filters", str, description="v1 filter string."),
        ],
        responses={
            (200, "application/zip"): OpenApiResponse(
                OpenApiTypes.BINARY, description="visitors.csv and one CSV per breakdown"
            ),
            400: schema.Error,
            401: schema.Error,
            403: schema.Error,
            404: schema.Error,
        },
        tags=["Export"],
    )
    def get(self, request: Request, domain: str) -> HttpResponse:
        site = self.site_for_request(request, domain)
        params = {k: str(v) for k, v in request.query_params.items()}
        date_range, anchor = v1.period_range(params)
        filters = v1.parse_filters(params.get("filters"))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            series = list(fields.TOP_METRICS)
            answer = run_query(
                site,
                {
                    "metrics": series,
                    "date_range": date_range,
                    "filters": filters,
                    "dimensions": ["time"],
                    "include": {"time_labels": True},
                },
                today=anchor,
            )
            by_label = {r["dimensions"][0]: r["metrics"] for r in answer["results"]}
            rows = [[label, *by_label.get(label, [0] * len(series))] for label in answer["meta"]["time_labels"]]
            archive.writestr("visitors.csv", _csv(["date", *series], rows))
            for name, dimension, metrics in EXPORT_BREAKDOWNS:
                body: dict[str, Any] = {
                    "metrics": list(metrics),
                    "date_range": date_range,
                    "filters": filters,
                    "dimensions": [dimension],
                }
                try:
                    answer = run_query(site, body, today=anchor)
                except QueryError:
                    continue
                table = [[*r["dimensions"], *(csv_cell(v) for v in r["metrics"])] for r in answer["results"]]
                archive.writestr(name, _csv([dimension.split(":", 1)[1], *metrics], table))
        response = HttpResponse(buffer.getvalue(), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{site.domain}-export.zip"'
        return response


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    import csv

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()
