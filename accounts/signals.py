"""Signals other apps connect to, sent after the deleting transaction commits.

- ``site_deleted(sender=Site, site_id: int, account_id: int)``
- ``account_deleted(sender=Account, account_id: int, site_ids: list[int])``

Receivers remove what lives outside the accounts tables (raw events, Redis keys).
"""

from __future__ import annotations

from django.dispatch import Signal

site_deleted = Signal()
account_deleted = Signal()
