"""Verbs on sites: create, update, rotate the site key, delete.

Every path that changes a site (the Sites API, the settings pages, the admin)
goes through these functions, each inside ``transaction.atomic``. The
collector's per-process site cache hears of the change through Django's
``post_save``/``post_delete`` signals on ``Site``; what lives outside the
accounts tables (raw events, Redis rollups) is removed by receivers of
``accounts.signals.site_deleted``, sent after the delete commits, and
recomputed by receivers of ``accounts.signals.site_timezone_changed``, sent
after a change of timezone commits.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import zoneinfo
from collections.abc import Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction
from django.db.models import Q

from accounts.domains import DomainError, normalise_host, skeleton, to_unicode
from accounts.models import Account, Site, new_site_key
from accounts.signals import site_deleted, site_timezone_changed

logger = logging.getLogger(__name__)

MAX_DOMAIN_LENGTH = 255
MAX_ALLOWED_ORIGINS = 50
_LABEL = re.compile(r"^(?!-)[^\W_](?:[^\W_]|-){0,62}(?<!-)$")
# Path segments that routes under /api/v1/sites/ and /sites/ use for themselves.
RESERVED_DOMAINS = frozenset({"goals", "guests", "shared-links", "teams", "new"})


class SiteError(ValueError):
    """A rejected change; ``field`` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def clean_domain(raw: Any) -> str:
    """The canonical form of a site's domain, or ``SiteError``.

    A host name (letters of any script, digits, hyphens; dot-separated labels)
    in the form ``accounts.domains`` stores: NFKC-normalised (full-width
    letters become ASCII), lower case, IDNA ``xn--`` labels. A scheme, a
    trailing slash and a trailing dot are dropped; a path, port, query or
    fragment is refused; a label may not mix scripts. No DNS or public-suffix
    lookup, so reserved names such as ``shop.example`` work.
    """
    if raw is not None and not isinstance(raw, str):
        raise SiteError("domain", "domain must be a string")
    if raw is None or not raw.strip():
        raise SiteError("domain", "domain is required")
    value = unicodedata.normalize("NFKC", raw.strip()).lower()
    for scheme in ("https://", "http://"):
        if value.startswith(scheme):
            value = value[len(scheme) :]
    value = value.rstrip("/")
    if not value:
        raise SiteError("domain", "domain is required")
    if len(value) > MAX_DOMAIN_LENGTH:
        raise SiteError("domain", f"domain is longer than {MAX_DOMAIN_LENGTH} characters")
    if any(char in value for char in "?#@ \t\r\n\\"):
        raise SiteError("domain", "domain must be a host name such as example.com")
    host, _, path = value.partition("/")
    if path:
        raise SiteError("domain", f"domain must be a host name without a path: {host.rstrip('.')}, not {value}")
    if ":" in host:
        raise SiteError("domain", "domain must not contain a port")
    host = host.rstrip(".")
    labels = host.split(".")
    if not host or not all(_LABEL.match(label) for label in labels):
        raise SiteError("domain", f"{raw.strip()!r} is not a valid host name")
    if len(labels) == 1 and (host in RESERVED_DOMAINS or host.isdigit()):
        raise SiteError("domain", f"{host!r} is reserved")
    try:
        host = normalise_host(host)
    except DomainError as error:
        raise SiteError("domain", str(error)) from None
    if len(host) > MAX_DOMAIN_LENGTH:
        raise SiteError("domain", f"domain is longer than {MAX_DOMAIN_LENGTH} characters in its IDNA form")
    return host


def clean_timezone(raw: Any) -> str:
    if raw is None or raw == "":
        return "UTC"
    if not isinstance(raw, str) or raw.strip() not in _timezones():
        raise SiteError("timezone", f"{raw!r} is not an IANA time zone such as Europe/Berlin")
    return raw.strip()


def clean_origin(raw: str) -> str:
    value = raw.strip().rstrip("/").lower()
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.path or parts.query or parts.fragment:
        raise SiteError("allowed_origins", f"{raw.strip()!r} is not an origin such as https://shop.example")
    try:
        port = parts.port
    except ValueError:
        raise SiteError("allowed_origins", f"{raw.strip()!r} has an invalid port") from None
    if parts.username or parts.password:
        raise SiteError("allowed_origins", f"{raw.strip()!r} must not contain credentials")
    # Browsers send an IDNA host in its xn-- form, so the origin is kept in that form too.
    host = clean_domain(parts.hostname)
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def clean_origins(raw: Any) -> list[str]:
    """Origins from a list or a text of lines/commas; duplicates dropped, order kept."""
    if raw is None:
        return []
    items: Iterable[Any]
    if isinstance(raw, str):
        items = re.split(r"[\s,]+", raw)
    elif isinstance(raw, list | tuple):
        items = raw
    else:
        raise SiteError("allowed_origins", "allowed_origins must be a list of origins")
    origins: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise SiteError("allowed_origins", "allowed_origins must be a list of origins")
        if item.strip() and (origin := clean_origin(item)) not in origins:
            origins.append(origin)
    if len(origins) > MAX_ALLOWED_ORIGINS:
        raise SiteError("allowed_origins", f"at most {MAX_ALLOWED_ORIGINS} allowed origins")
    return origins


def _taken(domain: str) -> SiteError:
    return SiteError("domain", f"{domain} is already registered")


def check_domain_free(domain: str, account_id: int, site_pk: int | None = None) -> None:
    """``SiteError`` if ``domain`` (clean) is taken, or looks like a domain of another account.

    Look-alikes within one account are the account's own business.
    """
    others = Site.objects.exclude(pk=site_pk) if site_pk is not None else Site.objects.all()
    if others.filter(domain=domain).exists():
        raise _taken(domain)
    look = skeleton(domain)
    # Only IDNA domains can differ from their skeleton, and they are few: their
    # skeletons are computed here rather than stored and indexed.
    candidates = others.exclude(account_id=account_id).filter(Q(domain=look) | Q(domain__contains="xn--"))
    for other in candidates.values_list("domain", flat=True).order_by("domain"):
        if skeleton(other) == look:
            shown, theirs = to_unicode(domain), to_unicode(other)
            raise SiteError("domain", f"{shown} looks like {theirs}, which is already registered: choose another")


def create_site(
    account: Account,
    domain: Any,
    timezone: Any = "UTC",
    *,
    allowed_origins: Any = None,
    public: bool = False,
) -> Site:
    clean = clean_domain(domain)
    tz = clean_timezone(timezone)
    origins = clean_origins(allowed_origins)
    try:
        with transaction.atomic():
            check_domain_free(clean, account.pk)
            site = Site.objects.create(
                account=account, domain=clean, timezone=tz, allowed_origins=origins, public=bool(public)
            )
    except IntegrityError:
        # Two creations of one domain raced; the unique index decided.
        raise _taken(clean) from None
    logger.info("site.created", extra={"account_id": account.pk, "site_id": site.pk, "domain": clean})
    return site


def update_site(site: Site, **changes: Any) -> Site:
    """Change any of ``domain``, ``timezone``, ``allowed_origins``, ``public``."""
    unknown = set(changes) - {"domain", "timezone", "allowed_origins", "public"}
    if unknown:
        raise SiteError(sorted(unknown)[0], f"{sorted(unknown)[0]} cannot be changed")
    fields: dict[str, Any] = {}
    # Only a rename is checked, so a site named under older rules (a path, say) keeps its settings.
    if "domain" in changes and changes["domain"] != site.domain:
        fields["domain"] = clean_domain(changes["domain"])
    if "timezone" in changes:
        fields["timezone"] = clean_timezone(changes["timezone"])
    if "allowed_origins" in changes:
        fields["allowed_origins"] = clean_origins(changes["allowed_origins"])
    if "public" in changes:
        if not isinstance(changes["public"], bool):
            raise SiteError("public", "public must be true or false")
        fields["public"] = changes["public"]
    try:
        with transaction.atomic():
            locked = Site.objects.select_for_update().get(pk=site.pk)
            domain = fields.get("domain")
            if domain and domain != locked.domain:
                check_domain_free(domain, locked.account_id, site.pk)
            old_timezone = locked.timezone
            for name, value in fields.items():
                setattr(locked, name, value)
            locked.save()
            if locked.timezone != old_timezone:
                _send_timezone_changed(site.pk, old_timezone, locked.timezone)
    except IntegrityError:
        raise _taken(str(fields.get("domain"))) from None
    for name, value in fields.items():
        setattr(site, name, value)
    site.updated = locked.updated
    logger.info("site.updated", extra={"site_id": site.pk, "fields": sorted(fields)})
    return site


def _send_timezone_changed(site_id: int, old: str, new: str) -> None:
    """Every rollup bucket of the site moves: tell the data stores once the change commits."""
    transaction.on_commit(lambda: site_timezone_changed.send(sender=Site, site_id=site_id, old=old, new=new))


def rotate_site_key(site: Site) -> Site:
    """A new public site key; tags with the old one stop being accepted."""
    with transaction.atomic():
        locked = Site.objects.select_for_update().get(pk=site.pk)
        locked.site_key = new_site_key()
        locked.save(update_fields=["site_key", "updated"])
    site.site_key = locked.site_key
    site.updated = locked.updated
    logger.info("site.key_rotated", extra={"site_id": site.pk, "account_id": site.account_id})
    return site


def delete_site(site: Site) -> None:
    """Delete the site; ``site_deleted`` tells the data stores after commit."""
    site_id, account_id = site.pk, site.account_id
    with transaction.atomic():
        Site.objects.filter(pk=site_id).delete()
        transaction.on_commit(lambda: site_deleted.send(sender=Site, site_id=site_id, account_id=account_id))
    logger.info("site.deleted", extra={"site_id": site_id, "account_id": account_id})
