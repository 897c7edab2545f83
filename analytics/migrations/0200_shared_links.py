from __future__ import annotations

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

import analytics.models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("analytics", "0002_event_partitions"),
        ("analytics", "0100_goals"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="SharedLink",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100)),
                ("slug", models.CharField(default=analytics.models.new_share_slug, max_length=64, unique=True)),
                ("password_hash", models.CharField(blank=True, max_length=256)),
                ("created", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "site",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="shared_links", to="accounts.site"
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["site", "created"], name="sharedlink_site_created")],
            },
        ),
    ]
