"""Create the demo customer and site if missing, and print how to log in."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Account, Membership, Role, Site, User

DEMO_EMAIL = "demo@spinnakr.test"
DEMO_PASSWORD = "spinnakr-demo"  # noqa: S105 - a published demo login, development only
DEMO_DOMAIN = "demo.spinnakr.test"


class Command(BaseCommand):
    help = "Ensure the demo customer (login and site) exists; print the login and dashboard URL."

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            user = User.objects.filter(email=DEMO_EMAIL).first()
            if user is None:
                user = User.objects.create_user(DEMO_EMAIL, DEMO_PASSWORD, name="Demo", email_verified=True)
            account = Account.objects.filter(memberships__user=user).first()
            if account is None:
                account = Account.objects.create(name="Demo")
                Membership.objects.create(account=account, user=user, role=Role.OWNER)
            site = Site.objects.filter(domain=DEMO_DOMAIN).first()
            if site is None:
                site = Site.objects.create(account=account, domain=DEMO_DOMAIN, timezone="Europe/Berlin")
        base = settings.SITE_URL
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "Spinnakr demo customer",
                    f"  log in:     {base}/accounts/login/  as {DEMO_EMAIL} / {DEMO_PASSWORD}",
                    f"  dashboard:  {base}/sites/{site.domain}/",
                    "  live demo traffic (in a second terminal):",
                    f"    .venv/bin/python manage.py simulate_traffic --site {site.domain} --rate 5 --duration 600",
                    "",
                ]
            )
        )
