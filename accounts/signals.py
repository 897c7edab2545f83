"""Signals other apps connect to, sent after the changing transaction commits.

- ``site_deleted(sender=Site, site_id: int, account_id: int)``
- ``account_deleted(sender=Account, account_id: int, site_ids: list[int])``
- ``site_timezone_changed(sender=Site, site_id: int, old: str, new: str)``, sent by
  ``accounts.sites.update_site``, the one verb that changes a site's timezone

Receivers remove or recompute what lives outside the accounts tables (raw events, Redis keys).
"""

from __future__ import annotations

from django.dispatch import Signal

site_deleted = Signal()
account_deleted = Signal()
site_timezone_changed = Signal()
