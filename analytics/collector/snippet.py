"""``GET /js/script.js``: the tracking snippet, immutable for a year under ``?v=<version>``."""

from __future__ import annotations

import dataclasses
import logging
from urllib.parse import parse_qsl

from analytics.collector.http import Receive, Scope, Send
from spinnakr import staticfiles

logger = logging.getLogger(__name__)

# GET /js/script.js --------------------------------------------------------------

SNIPPET_PATH = "build/script.js"


def snippet_version() -> str:
    """The version of the built snippet, for tags: ``/js/script.js?v=<version>``."""
    static = staticfiles.load(SNIPPET_PATH)
    return "" if static is None else static.etag.strip('"')[:12]


async def script_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    static = staticfiles.load(SNIPPET_PATH)
    extra = [(b"access-control-allow-origin", b"*"), (b"cross-origin-resource-policy", b"cross-origin")]
    if static is not None:
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        versioned = query.get("v") == static.etag.strip('"')[:12]
        static = dataclasses.replace(
            static,
            cache_control="public, max-age=31536000, immutable" if versioned else "public, max-age=3600",
        )
    await staticfiles.serve(scope, receive, send, static, extra_headers=extra)
