"""bench/e2e: the collector and the worker end to end (``run``), and the worker alone (``drain``).

Importing the package sets its queues apart (``bench-e2e.events``, ``bench-e2e.default``) and sets
Django up on this checkout's settings, so every module of it may import models at its top.
"""

from __future__ import annotations

import os

import django

os.environ["SPINNAKR_QUEUE_PREFIX"] = "bench-e2e."
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spinnakr.settings")
django.setup()
