"""Refuse NUL characters and unpaired surrogates in the URL path, query string, cookies and forms.

Neither can be stored or looked up in PostgreSQL ``text`` (see ``spinnakr.untrusted``),
so no view needs to guard its own lookups against them. A path holding one names
nothing that can exist: 404, as for any missing object. A query string parameter,
cookie or form field holding one: 400. API paths and JSON requests get
``{"error": "…"}``, pages plain text. JSON bodies are checked by their parsers
(``BoundedJSONParser``, ``loads_json``); the collector is routed around Django and
checks its own input.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.http.multipartparser import MultiPartParserError

from spinnakr.untrusted import unstorable

logger = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"


def _fields(data: QueryDict) -> Iterable[tuple[str, str]]:
    for key, values in data.lists():
        yield key, key
        for value in values:
            if isinstance(value, str):
                yield key, value


def _form(request: HttpRequest) -> QueryDict | None:
    """The form fields of any method's body, parsed from a copy so the view can still read it.

    ``None`` when the body cannot be parsed (too large, too many fields, malformed):
    the view meets the same error when it reads the body and answers it as before.
    """
    if request.content_type not in (FORM, MULTIPART):
        return None
    try:
        body = request.body
        if request.content_type == FORM:
            return QueryDict(body, encoding="utf-8")
        fields, _files = request.parse_file_upload(request.META, io.BytesIO(body))
        return fields
    except (SuspiciousOperation, MultiPartParserError):
        return None


class UnstorableInputMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        problem = unstorable(request.path)
        if problem is not None:
            return self._refuse(request, 404, f"not found: the URL path holds {problem}")
        for name, text in _fields(request.GET):
            problem = unstorable(text)
            if problem is not None:
                return self._refuse(request, 400, f"{name}: the query string parameter holds {problem}")
        # A quoted cookie value may spell a NUL as "\\000"; the session's is looked up in PostgreSQL.
        for name, value in request.COOKIES.items():
            problem = unstorable(name) or unstorable(value)
            if problem is not None:
                return self._refuse(request, 400, f"{name}: the cookie holds {problem}")
        form = _form(request)
        for name, text in _fields(form) if form is not None else ():
            problem = unstorable(text)
            if problem is not None:
                return self._refuse(request, 400, f"{name}: the form field holds {problem}")
        return self.get_response(request)

    def _refuse(self, request: HttpRequest, status: int, message: str) -> HttpResponse:
        logger.info("request.unstorable_input", extra={"status": status, "method": request.method})
        wants_json = (
            request.path.startswith("/api/")
            or request.content_type == "application/json"
            or "application/json" in request.headers.get("Accept", "")
        )
        if wants_json:
            return JsonResponse({"error": message}, status=status)
        return HttpResponse(f"{message}\n", status=status, content_type="text/plain; charset=utf-8")
