"""Goal verbs: create (idempotent, as Plausible's PUT) and delete a site's goals."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from accounts.models import Site
from analytics.models import Goal
from analytics.query.errors import QueryError

logger = logging.getLogger(__name__)

MAX_GOALS_PER_SITE = 500


def create_goal(
    site: Site, goal_type: object, event_name: object = None, page_path: object = None, display_name: object = None
) -> tuple[Goal, bool]:
    """Find or create a goal; ``QueryError`` names an invalid field. Returns (goal, created)."""
    if goal_type not in ("event", "page"):
        raise QueryError("goal_type: must be 'event' or 'page'")
    if goal_type == "event":
        if not isinstance(event_name, str) or not event_name.strip() or len(event_name) > 120:
            raise QueryError("event_name: is required for an event goal (1-120 characters)")
        lookup = {"event_name": event_name.strip(), "page_path": ""}
        default_name = event_name.strip()
    else:
        if not isinstance(page_path, str) or not page_path.startswith("/") or len(page_path) > 2000:
            raise QueryError("page_path: is required for a page goal and must start with '/'")
        lookup = {"event_name": "", "page_path": page_path}
        default_name = f"Visit {page_path}"
    if display_name is not None and (
        not isinstance(display_name, str) or not display_name.strip() or len(display_name) > 120
    ):
        raise QueryError("display_name: must be 1-120 characters")
    name = display_name.strip() if isinstance(display_name, str) else default_name
    with transaction.atomic():
        existing = Goal.objects.select_for_update().filter(site=site, **lookup).first()
        if existing is not None:
            return existing, False
        if Goal.objects.filter(site=site).count() >= MAX_GOALS_PER_SITE:
            raise QueryError(f"goal_type: a site may have at most {MAX_GOALS_PER_SITE} goals")
        try:
            with transaction.atomic():
                goal = Goal.objects.create(site=site, display_name=name, **lookup)
        except IntegrityError:
            raise QueryError(f"display_name: the site already has a goal named {name!r}") from None
    logger.info("goal.created", extra={"site_id": site.pk, "goal_id": goal.pk, "goal_type": goal_type})
    return goal, True


def delete_goal(site: Site, goal_id: object) -> bool:
    try:
        pk = int(str(goal_id))
    except ValueError:
        return False
    with transaction.atomic():
        deleted, _ = Goal.objects.filter(site=site, pk=pk).delete()
    if deleted:
        logger.info("goal.deleted", extra={"site_id": site.pk, "goal_id": pk})
    return bool(deleted)


def goal_json(goal: Goal) -> dict[str, object]:
    return {
        "id": str(goal.pk),
        "display_name": goal.display_name,
        "goal_type": goal.goal_type,
        "event_name": goal.event_name or None,
        "page_path": goal.page_path or None,
    }
