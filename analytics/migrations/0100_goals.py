"""Goals (event name or page path pattern) and per-account API rate limits.

The Event model's state is left to migrations 0001 and 0201 (the table is raw SQL)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("analytics", "0002_event_partitions"),
    ]

    operations = [
        migrations.CreateModel(
            name="APIRateLimit",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("requests_per_hour", models.PositiveIntegerField()),
                (
                    "account",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="api_rate_limit",
                        to="accounts.account",
                    ),
                ),
            ],
            options={
                "verbose_name": "API rate limit",
            },
        ),
        migrations.CreateModel(
            name="Goal",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("event_name", models.CharField(blank=True, default="", max_length=120)),
                ("page_path", models.CharField(blank=True, default="", max_length=2000)),
                ("display_name", models.CharField(max_length=120)),
                ("currency", models.CharField(blank=True, default="", max_length=3)),
                ("created", models.DateTimeField(auto_now_add=True)),
                (
                    "site",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="goals", to="accounts.site"
                    ),
                ),
            ],
            options={
                "ordering": ["site", "id"],
                "constraints": [
                    models.UniqueConstraint(fields=("site", "display_name"), name="goal_site_display_name"),
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("event_name", ""), models.Q(("page_path", ""), _negated=True)),
                            models.Q(models.Q(("event_name", ""), _negated=True), ("page_path", "")),
                            _connector="OR",
                        ),
                        name="goal_event_xor_page",
                    ),
                ],
            },
        ),
    ]
