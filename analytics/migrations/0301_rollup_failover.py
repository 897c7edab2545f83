"""Operational records of rollup failovers: the batches each master took, the rebuilds they caused."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("analytics", "0300_visits"),
    ]

    operations = [
        migrations.CreateModel(
            name="RollupMark",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("server", models.CharField(max_length=200)),
                ("token", models.CharField(max_length=32)),
                ("site_id", models.BigIntegerField()),
                ("first_event", models.DateTimeField()),
                ("last_event", models.DateTimeField()),
                ("events", models.PositiveIntegerField()),
                ("applied", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                "indexes": [models.Index(fields=["server", "applied"], name="rollupmark_server_applied")],
            },
        ),
        migrations.CreateModel(
            name="RollupRebuild",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("server", models.CharField(max_length=200)),
                ("reason", models.CharField(max_length=300)),
                ("window_start", models.DateTimeField()),
                ("window_end", models.DateTimeField()),
                ("missed_events", models.PositiveIntegerField(default=0)),
                ("created", models.DateTimeField(default=django.utils.timezone.now)),
                ("started", models.DateTimeField(blank=True, null=True)),
                ("finished", models.DateTimeField(blank=True, null=True)),
                ("replayed_events", models.PositiveIntegerField(blank=True, null=True)),
                ("error", models.TextField(blank=True)),
                (
                    "site",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="rollup_rebuilds", to="accounts.site"
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["site", "created"], name="rolluprebuild_site_created")],
            },
        ),
    ]
