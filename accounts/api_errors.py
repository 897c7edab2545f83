"""DRF's exception handler with Plausible's error shape ``{"error": "…"}``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler with Plausible's error shape ``{"error": "…"}``."""
    if isinstance(exc, RequestDataTooBig):
        return Response({"error": "the request body is too large"}, status=413)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "not found")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or "permission denied")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, dict) and "detail" in data and len(data) == 1:
        response.data = {"error": str(data["detail"])}
    elif isinstance(data, dict):
        response.data = {"error": _flatten(data)}
    elif isinstance(data, list):
        response.data = {"error": "; ".join(str(item) for item in data)}
    return response


def _flatten(errors: dict[str, Any]) -> str:
    parts = []
    for field, messages in errors.items():
        text = "; ".join(str(m) for m in messages) if isinstance(messages, list) else str(messages)
        parts.append(text if field in {"non_field_errors", "detail", "error"} else f"{field}: {text}")
    return "; ".join(parts)
