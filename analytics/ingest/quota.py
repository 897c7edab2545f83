"""Monthly event quotas: counted by the worker in Redis, enforced by the collector.

``{a:<account_id>}:quota:<yyyymm>`` holds the pageviews and custom events (engagement events
are free) an account's sites sent in a calendar month (UTC, by event time). The worker adds
each batch once (a per-batch marker guards the increment).

Over-quota behaviour, like Plausible's grace period: an account keeps being counted up to
110% of its ``monthly_event_quota``; beyond that its id is in the Redis set ``quota:over``
(on the rollups database, ``settings.REDIS_DATA_URL``) and the collector answers its events
with 403 ``{"error": "monthly event quota exceeded"}``, polling the set every few seconds.
The worker adds an account to the set as soon as a batch crosses the line; the beat task
``analytics.refresh_quota_flags`` rebuilds the set every minute, so a new month or a raised
quota lifts the block within a minute. Suspended accounts are refused elsewhere (the collector).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from accounts.models import Account
from spinnakr import redis_clients

GRACE = 1.10
OVER_SET = "quota:over"
MARKER_TTL = 48 * 3600
KEY_TTL = 400 * 86400


def month_stamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m")


def quota_key(account_id: int, month: str) -> str:
    return f"{{a:{account_id}}}:quota:{month}"


@cache
def _script() -> Any:
    return redis_clients.data().register_script((Path(__file__).parent / "lua" / "quota.lua").read_text())


def limit(quota: int) -> int:
    """Events counted before an account is blocked: its quota plus the 10% grace."""
    return int(quota * GRACE)


def record_batches(items: Sequence[tuple[int, int, str, Mapping[str, int]]]) -> dict[int, int]:
    """Count each (account, quota, batch, counts) once per month, in one round trip; flags an
    account when it crosses its limit.

    Each batch keeps its own marker, so a batch counted here and delivered again alone (or in
    another group) is not counted twice. Answers each account's total for the current month.
    """
    current = month_stamp()
    pipe = redis_clients.data().pipeline(transaction=False)
    calls: list[tuple[int, str]] = []
    quotas: dict[int, int] = {}
    for account_id, quota, batch_id, counts in items:
        quotas[account_id] = quota
        for month, count in counts.items():
            if count <= 0:
                continue
            _script()(
                keys=[quota_key(account_id, month), f"{{a:{account_id}}}:qb:{batch_id}:{month}"],
                args=[count, MARKER_TTL, KEY_TTL],
                client=pipe,
            )
            calls.append((account_id, month))
    totals = dict.fromkeys(quotas, 0)
    if calls:
        for (account_id, month), value in zip(calls, pipe.execute(), strict=True):
            if month == current:
                totals[account_id] = max(totals[account_id], int(value))
    over = [str(a) for a, total in totals.items() if total > limit(quotas[a])]
    if over:
        redis_clients.data().sadd(OVER_SET, *over)
    return totals


def events_this_month(account_id: int) -> int:
    """Events counted for the account in the current calendar month (UTC)."""
    return int(redis_clients.data().get(quota_key(account_id, month_stamp())) or 0)


def over_quota(account: Account) -> bool:
    """Whether the account is past its quota plus grace this month."""
    return events_this_month(account.id) > limit(account.monthly_event_quota)


def over_quota_account_ids() -> set[int]:
    """The blocked accounts, as the collector reads them."""
    return {int(member) for member in redis_clients.data().smembers(OVER_SET)}


def refresh_flags() -> set[int]:
    """Recompute ``quota:over`` for the current month; answers the blocked account ids."""
    month = month_stamp()
    accounts = list(Account.objects.values_list("id", "monthly_event_quota"))
    pipe = redis_clients.data().pipeline(transaction=False)
    for account_id, _ in accounts:
        pipe.get(quota_key(account_id, month))
    values = pipe.execute()
    over = {
        account_id
        for (account_id, quota), value in zip(accounts, values, strict=True)
        if int(value or 0) > limit(quota)
    }
    pipe = redis_clients.data().pipeline(transaction=True)
    pipe.delete(OVER_SET)
    if over:
        pipe.sadd(OVER_SET, *[str(a) for a in over])
    pipe.execute()
    return over
