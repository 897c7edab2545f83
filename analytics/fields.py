"""The field registry: every event field, dimension and metric, written once.

Everything that lists event fields, dimensions or metrics derives its list from here:

- the enriched event (``analytics.payloads.EnrichedEvent``) and the collector's event
  (``analytics.collector.endpoints.build_event``);
- the raw store's columns (``analytics.models.Event``, ``analytics.ingest.store``) and the
  visit's attributes (``analytics_visit``, the Redis session's ``a``);
- the query model's dimensions and filters (``analytics.query.model``), the Redis path's
  breakdowns (``analytics.query.redis_path``) and the SQL path's visit columns;
- the rollup script's dimension lists, handed to ``analytics/ingest/lua/apply_batch.lua`` as an
  argument (``ROLLUP_SPEC``) rather than written out in Lua;
- the dashboard's panels, tabs, labels and top figures (handed to the page as data), the CSV
  export's files, and the metric lists of the v1 and v2 APIs.

Three consumers stay written out, each held equal to the registry by
``analytics/tests/test_fields.py``: ``EnrichedEvent`` (mypy reads a TypedDict only as written, so a
generated one would type nothing), ``analytics.models.Event`` and the migrations (a model is
the migrations' record of the table, which must not move when this module is edited), and
``build_event`` (the collector's hot path fills each key from its own source, one dict literal).

How to add a dimension: docs/development.md, "How to add a dimension".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

# Where a field's value comes from.
Origin = Literal["request", "site", "enrichment", "worker"]
# ``event``: the event's own; ``acquisition``: the visit's, from its first event (how the visit
# came); ``visitor``: the visit's, and constant for the visitor (it derives from the address and
# user agent the visitor id hashes), so event-level and visit-level breakdowns agree.
Scope = Literal["event", "acquisition", "visitor"]
# How the rollups keep a dimension (``analytics.ingest.rollups``):
# ``event``: per pageview or custom event (pageviews, events, unique visitors per member);
# ``name``: event names (events, unique visitors per member);
# ``entry`` / ``exit``: the visit's first / last page (visits, bounces, duration / visits);
# ``acquisition``: the visit's, plus the pageviews and events of its visits;
# ``visitor``: both ``event`` and the visit's; ``none``: SQL only.
Role = Literal["event", "name", "entry", "exit", "acquisition", "visitor", "none"]
# PostgreSQL column types of ``analytics_event``.
Kind = Literal["bigint", "timestamptz", "uuid", "text", "jsonb", "numeric", "boolean", "smallint", "integer"]


@dataclass(frozen=True)
class Dimension:
    name: str  # the query dimension, as the Stats API v2 names it ("visit:country")
    column: str  # the column behind it: of analytics_event ("event:"), of analytics_visit ("visit:")
    role: Role
    label: str  # what one of its values is, as the dashboard's filter chips say ("Country")
    tab: str = ""  # its tab in a dashboard panel ("" when no panel shows it)
    export: str = ""  # its CSV in the dashboard export ("" when the export leaves it out)

    @property
    def rollup(self) -> str:
        """The ``top:<rollup>`` part of its sorted-set keys ("" when no rollup keeps it)."""
        return "" if self.role == "none" else self.name.split(":", 1)[1]


@dataclass(frozen=True)
class Field:
    name: str  # the key in the enriched event (the payload)
    type: Any  # its Python type in the payload
    kind: Kind  # its column's type in analytics_event
    origin: Origin
    scope: Scope = "event"
    column: str = ""  # its column in analytics_event when not ``name``
    payload: bool = True  # False: the worker computes it (not in the enriched event)
    feed: bool = False  # shown per event in the live stream
    dimensions: tuple[Dimension, ...] = ()

    @property
    def store_column(self) -> str:
        return self.column or self.name


def _visit(name: str, column: str, role: Role, label: str, tab: str = "", export: str = "") -> Dimension:
    return Dimension(f"visit:{name}", column, role, label, tab, export)


def _text(name: str, scope: Scope, dimension: str, label: str, tab: str = "", export: str = "", **rest: Any) -> Field:
    role: Role = "acquisition" if scope == "acquisition" else "visitor"
    return Field(
        name, str, "text", "enrichment", scope, dimensions=(_visit(dimension, name, role, label, tab, export),), **rest
    )


FIELDS: tuple[Field, ...] = (
    Field("site_id", int, "bigint", "site"),
    Field("ts", int, "timestamptz", "request", column="timestamp"),  # epoch microseconds, UTC
    Field("event_id", str, "uuid", "request"),  # canonical text form
    Field(
        "name",
        str,
        "text",
        "request",
        feed=True,
        dimensions=(Dimension("event:name", "name", "name", "Event", "Custom events", "custom_events.csv"),),
    ),
    Field("visitor_id", int, "bigint", "enrichment"),  # signed 64-bit
    Field("visit_id", int, "bigint", "worker", payload=False),
    Field(
        "hostname",
        str,
        "text",
        "enrichment",
        feed=True,
        dimensions=(Dimension("event:hostname", "hostname", "event", "Hostname"),),
    ),
    Field(
        "pathname",
        str,
        "text",
        "enrichment",
        feed=True,
        dimensions=(
            Dimension("event:page", "pathname", "event", "Page", "Top pages", "pages.csv"),
            _visit("entry_page", "entry_page", "entry", "Entry page", "Entry", "entry_pages.csv"),
            _visit("exit_page", "exit_page", "exit", "Exit page", "Exit", "exit_pages.csv"),
        ),
    ),
    # The acquisition fields and then the visitor's, in the order the rollups' visit attributes
    # have always been sent to the script (the order of a Lua table's keys follows it).
    _text("referrer_source", "acquisition", "source", "Source", "Sources", "sources.csv", feed=True),
    _text("channel", "acquisition", "channel", "Channel", "Channels", "channels.csv"),
    _text("referrer", "acquisition", "referrer", "Referrer", "Referrers", "referrers.csv"),
    _text("utm_source", "acquisition", "utm_source", "UTM source", "UTM source", "utm_sources.csv"),
    _text("utm_medium", "acquisition", "utm_medium", "UTM medium", "UTM medium", "utm_mediums.csv"),
    _text("utm_campaign", "acquisition", "utm_campaign", "UTM campaign", "UTM campaign", "utm_campaigns.csv"),
    _text("utm_content", "acquisition", "utm_content", "UTM content", export="utm_contents.csv"),
    _text("utm_term", "acquisition", "utm_term", "UTM term", export="utm_terms.csv"),
    # ISO 3166-1 alpha-2, '' when unknown
    _text("country", "visitor", "country", "Country", "Countries", "countries.csv", feed=True),
    _text("browser", "visitor", "browser", "Browser", "Browsers", "browsers.csv", feed=True),
    _text("browser_version", "visitor", "browser_version", "Browser version"),
    _text("os", "visitor", "os", "OS", "OS", "operating_systems.csv", feed=True),
    _text("os_version", "visitor", "os_version", "OS version"),
    # 'Desktop', 'Mobile', 'Tablet' or ''
    _text("device", "visitor", "device", "Device", "Devices", "devices.csv", feed=True),
    # 'mobile', 'tablet', 'laptop', 'desktop' or ''
    _text("screen", "visitor", "screen", "Screen", "Screens", "screens.csv"),
    Field("props", dict[str, str], "jsonb", "request", feed=True),
    Field("revenue_amount", str | None, "numeric", "request"),  # decimal as text
    Field("revenue_currency", str, "text", "request"),
    Field("interactive", bool, "boolean", "request"),
    Field("scroll_depth", int | None, "smallint", "request"),  # 0-100, engagement events only
    Field("engagement_ms", int | None, "integer", "request"),  # engagement events only
)

# Dimensions of the query model that no field holds: goals (configured per site) and custom
# properties (``event:props:<key>``, one per key).
GOAL = Dimension("event:goal", "", "none", "Goal", "Goals")
PROPS_PREFIX = "event:props:"
PROPS_LABEL = "Property"
# The dashboard's properties tab: every property key seen in the range.
PROPS_TAB = ("props", "Properties")

FIELD_BY_NAME = {f.name: f for f in FIELDS}
# The enriched event's keys, in order.
EVENT_FIELDS: tuple[Field, ...] = tuple(f for f in FIELDS if f.payload)
# analytics_event's columns, in order.
STORE_COLUMNS: tuple[str, ...] = tuple(f.store_column for f in FIELDS)
# The visit's attributes: analytics_visit's columns from its first event.
VISIT_ATTRIBUTES: tuple[str, ...] = tuple(f.store_column for f in FIELDS if f.scope != "event")
# The live stream's fields of an event (besides its time).
FEED_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.feed)

FIELD_DIMENSIONS: tuple[Dimension, ...] = tuple(d for f in FIELDS for d in f.dimensions)
DIMENSIONS: tuple[Dimension, ...] = (*FIELD_DIMENSIONS, GOAL)
DIMENSION_BY_NAME = {d.name: d for d in DIMENSIONS}
# Query dimension → column: raw event columns and visit columns.
EVENT_COLUMNS = {d.name: d.column for d in FIELD_DIMENSIONS if d.name.startswith("event:")}
VISIT_COLUMNS = {d.name: d.column for d in FIELD_DIMENSIONS if d.name.startswith("visit:")}
QUERY_DIMENSIONS = {**EVENT_COLUMNS, **VISIT_COLUMNS}


def dimensions_of(*roles: Role) -> tuple[Dimension, ...]:
    return tuple(d for d in FIELD_DIMENSIONS if d.role in roles)


# The rollups' view of a visit attribute: (rollup dimension, enriched event key).
ROLLUP_ATTRIBUTES: tuple[tuple[str, str], ...] = tuple(
    (d.rollup, f.name) for f in FIELDS if f.scope != "event" for d in f.dimensions
)
ROLLUP_ACQUISITION = tuple(d.rollup for d in dimensions_of("acquisition"))
ROLLUP_VISITOR = tuple(d.rollup for d in dimensions_of("visitor"))
# Where the script reads a dimension's member: of an event, the prepared event's "pg" (page),
# "host" or its visit attributes "a"; of a visit, its entry page "en", exit page "x" or "a".
_EVENT_SOURCES = {"pathname": "pg", "hostname": "host"}
_VISIT_SOURCES = {"entry": "en", "exit": "x"}
ROLLUP_EVENT_DIMENSIONS: tuple[tuple[str, str], ...] = tuple(
    (d.rollup, _EVENT_SOURCES.get(d.column, "a")) for d in dimensions_of("event", "visitor")
)
ROLLUP_VISIT_DIMENSIONS: tuple[tuple[str, str], ...] = tuple(
    (d.rollup, _VISIT_SOURCES.get(d.role, "a")) for d in dimensions_of("entry", "exit", "acquisition", "visitor")
)
ROLLUP_NAME = next(d.rollup for d in dimensions_of("name"))
# Engagement (time on page, scroll depth) is kept per page.
ROLLUP_ENGAGEMENT = DIMENSION_BY_NAME["event:page"].rollup


@dataclass(frozen=True)
class Panel:
    id: str
    title: str
    tabs: tuple[str, ...]  # dimensions (and ``props``), in the order shown


PANELS: tuple[Panel, ...] = (
    Panel("pages", "Pages", ("event:page", "visit:entry_page", "visit:exit_page")),
    Panel(
        "sources",
        "Sources",
        (
            "visit:source",
            "visit:channel",
            "visit:referrer",
            "visit:utm_source",
            "visit:utm_medium",
            "visit:utm_campaign",
        ),
    ),
    Panel("countries", "Countries", ("visit:country",)),
    Panel("devices", "Devices", ("visit:browser", "visit:os", "visit:device", "visit:screen")),
    Panel("goals", "Goals & events", ("event:goal", "event:name", PROPS_TAB[0])),
)
TAB_LABELS = {**{d.name: d.tab for d in DIMENSIONS if d.tab}, PROPS_TAB[0]: PROPS_TAB[1]}
DIMENSION_LABELS = {d.name: d.label for d in DIMENSIONS}


def panels_data() -> list[dict[str, Any]]:
    """The panels as the dashboard template and script read them."""
    return [
        {"id": p.id, "title": p.title, "tabs": [{"dimension": t, "label": TAB_LABELS[t]} for t in p.tabs]}
        for p in PANELS
    ]


# Metrics --------------------------------------------------------------------------------------

# How a metric's value is written: a count, a decimal, a share in percent, seconds, a money
# object; ``points``: a change of it is a difference in percentage points, not a ratio.
Format = Literal["count", "decimal", "percent", "duration", "revenue"]
Needs = Literal["", "goal", "page"]


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    format: Format
    integer: bool  # the API answers an integer (else a float; revenue: an object)
    needs: Needs = ""  # an event:goal or event:page filter or dimension
    whole_visit: bool = False  # a property of whole visits: no event dimension splits it
    nullable: bool = False  # null, not 0, when nothing was measured
    points: bool = False
    counter: bool = False  # Redis counters answer it without a dimension
    breakdowns: frozenset[Role] = frozenset()  # the roles of the dimensions Redis breaks it down by
    v1: bool = True  # Stats API v1 knows it
    top: bool = False  # a figure of the dashboard's top row
    growing: bool = False  # over a range that includes now it never shrinks (the live dashboard's)
    lower_better: bool = False  # a fall is good news


def _roles(*roles: Role) -> frozenset[Role]:
    return frozenset(roles)


METRICS: tuple[Metric, ...] = (
    Metric(
        "visitors", "Unique visitors", "count", True, counter=True, top=True, growing=True,
        breakdowns=_roles("event", "name", "visitor"),
    ),
    Metric(
        "visits", "Visits", "count", True, counter=True, top=True, growing=True,
        breakdowns=_roles("entry", "exit", "acquisition", "visitor"),
    ),
    Metric(
        "pageviews", "Pageviews", "count", True, counter=True, top=True, growing=True,
        breakdowns=_roles("event", "acquisition", "visitor"),
    ),
    Metric(
        "views_per_visit", "Views per visit", "decimal", False, whole_visit=True, counter=True, top=True,
        breakdowns=_roles("acquisition", "visitor"),
    ),
    Metric(
        "bounce_rate", "Bounce rate", "percent", True, whole_visit=True, points=True, counter=True, top=True,
        lower_better=True,
        breakdowns=_roles("entry", "acquisition", "visitor"),
    ),
    Metric(
        "visit_duration", "Visit duration", "duration", True, whole_visit=True, counter=True, top=True,
        breakdowns=_roles("entry", "acquisition", "visitor"),
    ),
    Metric(
        "events", "Events", "count", True, counter=True,
        breakdowns=_roles("event", "name", "acquisition", "visitor"),
    ),
    Metric(
        "percentage", "Percentage", "percent", False, points=True, v1=False,
        breakdowns=_roles("event", "name", "visitor"),
    ),
    Metric("conversion_rate", "Conversion rate", "percent", False, needs="goal", points=True),
    Metric("group_conversion_rate", "Group conversion rate", "percent", False, needs="goal", points=True, v1=False),
    Metric("total_revenue", "Total revenue", "revenue", False, needs="goal"),
    Metric("average_revenue", "Average revenue", "revenue", False, needs="goal"),
    Metric("time_on_page", "Time on page", "duration", True, needs="page", nullable=True),
    Metric("scroll_depth", "Scroll depth", "percent", True, needs="page", nullable=True),
)  # fmt: skip
METRIC_BY_NAME = {m.name: m for m in METRICS}
METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)
V1_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS if m.v1)
TOP_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS if m.top)


def metric_names(**conditions: Any) -> frozenset[str]:
    """The names of the metrics whose attributes equal ``conditions`` (``whole_visit=True``)."""
    return frozenset(m.name for m in METRICS if all(getattr(m, k) == v for k, v in conditions.items()))


# The metrics of a dimension's CSV in the dashboard export, by the dimension's role.
EXPORT_METRICS: dict[Role, tuple[str, ...]] = {
    "acquisition": ("visitors", "visits", "bounce_rate", "visit_duration"),
    "entry": ("visitors", "visits", "bounce_rate", "visit_duration"),
    "event": ("visitors", "pageviews"),
    "exit": ("visitors", "visits"),
    "visitor": ("visitors", "visits"),
    "name": ("visitors", "events"),
}
# The dashboard export's CSVs: (file name, dimension, metrics).
EXPORTS: tuple[tuple[str, str, tuple[str, ...]], ...] = tuple(
    (d.export, d.name, EXPORT_METRICS[d.role]) for d in DIMENSIONS if d.export
)

# The rollups' counter hash fields (every counter hash carries all of them).
COUNTER_FIELDS = ("pageviews", "events", "visits", "bounces", "duration")

# The rollup script's dimension lists (ARGV of apply_batch.lua), encoded once.
ROLLUP_SPEC = json.dumps(
    {
        "event": ROLLUP_EVENT_DIMENSIONS,
        "visit": ROLLUP_VISIT_DIMENSIONS,
        "acquisition": ROLLUP_ACQUISITION,
        "name": ROLLUP_NAME,
        "engagement": ROLLUP_ENGAGEMENT,
        "counters": COUNTER_FIELDS,
    },
    separators=(",", ":"),
)


def dashboard_data() -> dict[str, Any]:
    """What the dashboard's script needs of the registry: labels, tabs and the top figures."""
    return {
        "panels": panels_data(),
        "dimensionLabels": {**DIMENSION_LABELS, PROPS_PREFIX: PROPS_LABEL},
        "metrics": {
            m.name: {"label": m.label, "format": m.format, "points": m.points, "lowerBetter": m.lower_better}
            for m in METRICS
        },
        "top": list(TOP_METRICS),
        "growing": [m.name for m in METRICS if m.growing],
    }
