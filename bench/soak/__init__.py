"""bench/soak: the whole service for a long run at a steady rate, with one fault of each kind.

It runs on bench/e2e's queues (``bench-e2e.events``, ``bench-e2e.default``; the two benches are
not meant to run together), and importing it sets Django up as bench/e2e does, so every module of
it may import models at its top.
"""

from __future__ import annotations

import bench.e2e  # noqa: F401 - the queues and Django's set-up
