"""Create an API key for a member of an account; prints the key once and nothing else."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.apikeys import create_api_key
from accounts.models import Account, Membership, Role, User


class Command(BaseCommand):
    help = "Create an API key; stdout gets the key alone, once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True, help="a member (admin or owner) of the account")
        parser.add_argument("--account", required=True, help="the account's name or public id")
        parser.add_argument("--name", required=True, help="a label for the key")
        parser.add_argument(
            "--scopes", required=True, help="comma-separated: stats:read,sites:write,events:write,feed:read"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(email__iexact=options["email"].strip()).first()
        if user is None:
            raise CommandError(f"no user with the e-mail {options['email']}")
        memberships = Membership.objects.select_related("account").filter(user=user)
        wanted = options["account"].strip()
        matches = [m for m in memberships if m.account.name == wanted or str(m.account.public_id) == wanted]
        if not matches:
            raise CommandError(f"{user.email} is not a member of an account called {wanted!r}")
        if len(matches) > 1:
            raise CommandError(f"{user.email} belongs to several accounts called {wanted!r}; pass the public id")
        membership = matches[0]
        if Role(membership.role) == Role.VIEWER:
            raise CommandError(f"{user.email} is a viewer of {wanted!r}; only admins and owners create API keys")
        account: Account = membership.account
        scopes = [scope.strip() for scope in options["scopes"].split(",") if scope.strip()]
        try:
            _key, raw = create_api_key(account, options["name"], scopes, created_by=user)
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(raw)
