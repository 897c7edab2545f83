"""Stats API v2 (``POST /api/v2/query``) and the v1 adapters over the same engine."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from analytics.api import schema
from analytics.api.base import APIBaseView, csv_cell, csv_response
from analytics.query import QueryError, run_query, v1
from analytics.query.realtime import visitors_now

V2_EXAMPLE = {
    "site_id": "example.com",
    "metrics": ["visitors", "pageviews", "bounce_rate"],
    "date_range": "7d",
    "dimensions": ["visit:source"],
    "filters": [["is", "visit:country", ["DE", "FR"]]],
    "order_by": [["visitors", "desc"]],
    "pagination": {"limit": 10, "offset": 0},
}
V2_RESPONSE = {
    "results": [
        {"metrics": [120, 310, 42], "dimensions": ["Google"]},
        {"metrics": [40, 75, 55], "dimensions": ["Direct / None"]},
    ],
    "meta": {},
    "query": {
        "site_id": "example.com",
        "metrics": ["visitors", "pageviews", "bounce_rate"],
        "date_range": ["2026-03-04T00:00:00+01:00", "2026-03-10T23:59:59+01:00"],
        "filters": [["is", "visit:country", ["DE", "FR"]]],
        "dimensions": ["visit:source"],
        "order_by": [["visitors", "desc"]],
        "include": {},
        "pagination": {"limit": 10, "offset": 0},
    },
}


def _v2_table(answer: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    query = answer["query"]
    header = [*query["dimensions"], *query["metrics"]]
    rows = [[*(csv_cell(v) for v in r["dimensions"]), *(csv_cell(v) for v in r["metrics"])] for r in answer["results"]]
    return header, rows


class QueryView(APIBaseView):
    """``POST /api/v2/query``: any query; Plausible's Stats API v2 request and response."""

    @extend_schema(
        operation_id="stats_v2_query",
        summary="Query stats (Stats API v2)",
        description=(
            "Plausible-compatible Stats API v2. `site_id` is the site's domain. A site outside the key's "
            "account answers 404. Send `Accept: text/csv` for CSV."
        ),
        request=schema.QueryRequest,
        responses={
            200: schema.QueryResponse,
            400: schema.Error,
            401: schema.Error,
            403: schema.Error,
            404: schema.Error,
            429: schema.Error,
        },
        examples=[
            OpenApiExample("Sources of visitors from Germany and France", value=V2_EXAMPLE, request_only=True),
            OpenApiExample("Answer", value=V2_RESPONSE, response_only=True),
        ],
        tags=["Stats API v2"],
    )
    def post(self, request: Request) -> Response:
        body = request.data
        if not isinstance(body, dict):
            raise QueryError("query: the body must be a JSON object")
        site = self.site_for_request(request, body.get("site_id"))
        answer = run_query(site, {k: v for k, v in body.items() if k != "site_id"})
        header, rows = _v2_table(answer)
        return csv_response(answer, header, rows)


def _params(request: Request) -> dict[str, str]:
    return {k: str(v) for k, v in request.query_params.items()}


V1_COMMON = [
    OpenApiParameter(
        "site_id",
        str,
        required=True,
        description="The site's domain.",
        examples=[OpenApiExample("site", value="example.com")],
    ),
    OpenApiParameter(
        "period", str, description="day, 7d, 28d, 30d, 91d, month, 6mo, 12mo, year, all or custom (default 30d)."
    ),
    OpenApiParameter("date", str, description="Reference day (YYYY-MM-DD), or START,END for period=custom."),
    OpenApiParameter("metrics", str, description="Comma-separated metrics (default visitors)."),
    OpenApiParameter("filters", str, description="e.g. visit:country==DE|FR;event:page==/blog/**"),
    OpenApiParameter("compare", str, description="previous_period or year_over_year."),
]


class V1StatsView(APIBaseView):
    """The Stats API v1 queries' one path: parameters, the v2 body they make, its answer in v1's shape."""

    def v1_answer(
        self,
        request: Request,
        build: Callable[[Mapping[str, str]], tuple[dict[str, Any], Any]],
        shape: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        params = _params(request)
        site = self.site_for_request(request, params.get("site_id"))
        body, anchor = build(params)
        answer = run_query(site, body, today=anchor)
        data = shape(body, answer)
        if answer["meta"].get("live") is False:  # as v2's meta says it: answered from SQL, events waiting
            data["live"] = False
        return body, data


class RealtimeVisitorsView(APIBaseView):
    @extend_schema(
        operation_id="stats_v1_realtime_visitors",
        summary="Visitors in the last 5 minutes (Stats API v1)",
        parameters=[V1_COMMON[0]],
        responses={200: OpenApiTypes.INT, 401: schema.Error, 403: schema.Error, 404: schema.Error},
        examples=[OpenApiExample("Visitors now", value=21, response_only=True)],
        tags=["Stats API v1"],
    )
    def get(self, request: Request) -> Response:
        site = self.site_for_request(request, request.query_params.get("site_id"))
        count = visitors_now(site)
        return csv_response(count, ["visitors"], [[count]])


class AggregateView(V1StatsView):
    @extend_schema(
        operation_id="stats_v1_aggregate",
        summary="Aggregate (Stats API v1)",
        parameters=V1_COMMON,
        responses={200: schema.V1Aggregate, 400: schema.Error, 401: schema.Error, 403: schema.Error, 404: schema.Error},
        examples=[
            OpenApiExample(
                "Answer",
                value={"results": {"visitors": {"value": 201, "change": 12, "comparison_value": 179}}},
                response_only=True,
            )
        ],
        tags=["Stats API v1"],
    )
    def get(self, request: Request) -> Response:
        _body, data = self.v1_answer(request, v1.aggregate_body, v1.aggregate_result)
        rows = [[metric, csv_cell(entry["value"])] for metric, entry in data["results"].items()]
        return csv_response(data, ["metric", "value"], rows)


class TimeseriesView(V1StatsView):
    @extend_schema(
        operation_id="stats_v1_timeseries",
        summary="Timeseries (Stats API v1)",
        parameters=[*V1_COMMON, OpenApiParameter("interval", str, description="minute, hour, date, week or month.")],
        responses={200: schema.V1List, 400: schema.Error, 401: schema.Error, 403: schema.Error, 404: schema.Error},
        examples=[
            OpenApiExample(
                "Answer",
                value={"results": [{"date": "2026-03-01", "visitors": 36}, {"date": "2026-03-02", "visitors": 41}]},
                response_only=True,
            )
        ],
        tags=["Stats API v1"],
    )
    def get(self, request: Request) -> Response:
        body, data = self.v1_answer(request, v1.timeseries_body, v1.timeseries_result)
        header = ["date", *body["metrics"]]
        rows = [[r["date"], *(csv_cell(r[m]) for m in body["metrics"])] for r in data["results"]]
        return csv_response(data, header, rows)


class BreakdownView(V1StatsView):
    @extend_schema(
        operation_id="stats_v1_breakdown",
        summary="Breakdown (Stats API v1)",
        parameters=[
            *V1_COMMON,
            OpenApiParameter(
                "property", str, required=True, description="e.g. event:page, visit:source, event:props:plan"
            ),
            OpenApiParameter("limit", int, description="Rows per page, 1-1000 (default 100)."),
            OpenApiParameter("page", int, description="Page number from 1."),
        ],
        responses={200: schema.V1List, 400: schema.Error, 401: schema.Error, 403: schema.Error, 404: schema.Error},
        examples=[
            OpenApiExample(
                "Answer",
                value={"results": [{"source": "Google", "visitors": 120}, {"source": "Twitter", "visitors": 40}]},
                response_only=True,
            )
        ],
        tags=["Stats API v1"],
    )
    def get(self, request: Request) -> Response:
        body, data = self.v1_answer(request, v1.breakdown_body, v1.breakdown_result)
        key = v1.breakdown_key(body["dimensions"][0])
        header = [key, *body["metrics"]]
        rows = [[r[key], *(csv_cell(r[m]) for m in body["metrics"])] for r in data["results"]]
        return csv_response(data, header, rows)
