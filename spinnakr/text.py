"""Text no store can hold: what PostgreSQL ``text`` and ``jsonb`` refuse, and UTF-8 cannot encode.

Imported by the collector's event parser and by the request guards, before Django is configured
(``spinnakr.celery`` loads the event contract), so it imports nothing of Django.
"""

from __future__ import annotations

import re

# A NUL (PostgreSQL refuses it) or a surrogate (JSON's lone "\ud800" decodes to one; no UTF-8 form).
UNSTORABLE_CHARACTERS = re.compile("[\x00\ud800-\udfff]")
