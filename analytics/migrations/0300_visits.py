"""``analytics_visit``: one row per stored visit, kept by ``analytics.store`` with the events.

Filled here from the events already stored (one pass, sorted by visit), in the order of the
visits' starts: a date range's visits then lie together, as they do when the worker appends them. The text is frozen as
it was written (the columns and aggregates of ``analytics.store`` at the time).
"""

from __future__ import annotations

from django.db import migrations

CREATE = """
CREATE TABLE analytics_visit (
    site_id bigint NOT NULL,
    visitor_id bigint NOT NULL,
    visit_id bigint NOT NULL,
    "start" timestamptz NOT NULL,
    entry_event_id uuid NOT NULL,
    "end" timestamptz NOT NULL,
    exit_event_id uuid NOT NULL,
    pageviews integer NOT NULL,
    interactions integer NOT NULL,
    events integer NOT NULL,
    entry_page text NOT NULL,
    exit_page text NOT NULL,
    referrer text NOT NULL,
    referrer_source text NOT NULL,
    channel text NOT NULL,
    utm_source text NOT NULL,
    utm_medium text NOT NULL,
    utm_campaign text NOT NULL,
    utm_content text NOT NULL,
    utm_term text NOT NULL,
    country text NOT NULL,
    browser text NOT NULL,
    browser_version text NOT NULL,
    os text NOT NULL,
    os_version text NOT NULL,
    device text NOT NULL,
    screen text NOT NULL,
    PRIMARY KEY (site_id, visitor_id, visit_id)
);
CREATE INDEX analytics_visit_site_start ON analytics_visit (site_id, "start");
SET LOCAL work_mem = '256MB';
INSERT INTO analytics_visit ("site_id", "visitor_id", "visit_id", "start", "entry_event_id", "end", "exit_event_id", "pageviews", "interactions", "events", "entry_page", "exit_page", "referrer", "referrer_source", "channel", "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "country", "browser", "browser_version", "os", "os_version", "device", "screen")
SELECT
    site_id,
    visitor_id,
    visit_id,
    min("timestamp"),
    (array_agg(event_id ORDER BY "timestamp", event_id))[1],
    max("timestamp"),
    (array_agg(event_id ORDER BY "timestamp", event_id))[count(*)::int],
    count(*) FILTER (WHERE name = 'pageview'),
    count(*) FILTER (WHERE name = 'pageview' OR interactive),
    count(*),
    (array_agg(pathname ORDER BY "timestamp", event_id))[1],
    (array_agg(pathname ORDER BY "timestamp", event_id))[count(*)::int],
    (array_agg(referrer ORDER BY "timestamp", event_id))[1],
    (array_agg(referrer_source ORDER BY "timestamp", event_id))[1],
    (array_agg(channel ORDER BY "timestamp", event_id))[1],
    (array_agg(utm_source ORDER BY "timestamp", event_id))[1],
    (array_agg(utm_medium ORDER BY "timestamp", event_id))[1],
    (array_agg(utm_campaign ORDER BY "timestamp", event_id))[1],
    (array_agg(utm_content ORDER BY "timestamp", event_id))[1],
    (array_agg(utm_term ORDER BY "timestamp", event_id))[1],
    (array_agg(country ORDER BY "timestamp", event_id))[1],
    (array_agg(browser ORDER BY "timestamp", event_id))[1],
    (array_agg(browser_version ORDER BY "timestamp", event_id))[1],
    (array_agg(os ORDER BY "timestamp", event_id))[1],
    (array_agg(os_version ORDER BY "timestamp", event_id))[1],
    (array_agg(device ORDER BY "timestamp", event_id))[1],
    (array_agg(screen ORDER BY "timestamp", event_id))[1]
FROM analytics_event WHERE name <> 'engagement' GROUP BY site_id, visitor_id, visit_id
ORDER BY 4;
ANALYZE analytics_visit;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0201_event_model_state"),
    ]

    operations = [migrations.RunSQL(CREATE, reverse_sql="DROP TABLE analytics_visit")]
