from __future__ import annotations

from django.db import migrations

CREATE = """
CREATE TABLE analytics_event (
    site_id bigint NOT NULL,
    "timestamp" timestamptz NOT NULL,
    event_id uuid NOT NULL,
    name text NOT NULL,
    visitor_id bigint NOT NULL,
    visit_id bigint NOT NULL,
    hostname text NOT NULL DEFAULT '',
    pathname text NOT NULL DEFAULT '/',
    referrer text NOT NULL DEFAULT '',
    referrer_source text NOT NULL DEFAULT '',
    channel text NOT NULL DEFAULT '',
    utm_source text NOT NULL DEFAULT '',
    utm_medium text NOT NULL DEFAULT '',
    utm_campaign text NOT NULL DEFAULT '',
    utm_content text NOT NULL DEFAULT '',
    utm_term text NOT NULL DEFAULT '',
    country text NOT NULL DEFAULT '',
    browser text NOT NULL DEFAULT '',
    browser_version text NOT NULL DEFAULT '',
    os text NOT NULL DEFAULT '',
    os_version text NOT NULL DEFAULT '',
    device text NOT NULL DEFAULT '',
    screen text NOT NULL DEFAULT '',
    props jsonb NOT NULL DEFAULT '{}'::jsonb,
    revenue_amount numeric(18, 4),
    revenue_currency text NOT NULL DEFAULT '',
    interactive boolean NOT NULL DEFAULT true,
    scroll_depth smallint,
    engagement_ms integer,
    PRIMARY KEY (site_id, "timestamp", event_id)
) PARTITION BY RANGE ("timestamp");
CREATE INDEX analytics_event_site_name_ts ON analytics_event (site_id, name, "timestamp");
CREATE INDEX analytics_event_site_visit ON analytics_event (site_id, visit_id, "timestamp");
"""


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [migrations.RunSQL(CREATE, "DROP TABLE analytics_event CASCADE")]
