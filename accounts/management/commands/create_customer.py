"""Create an active, verified user who owns a new account and can log in at once."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.customers import create_customer


class Command(BaseCommand):
    help = "Create a customer: a verified user owning a new account."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True)
        parser.add_argument("--password", required=True)
        parser.add_argument("--account", required=True, help="name of the new account")
        parser.add_argument("--name", default="", help="the person's name")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            validate_password(options["password"])
        except ValidationError as error:
            raise CommandError("password: " + " ".join(error.messages)) from None
        try:
            user, account = create_customer(
                options["email"], options["password"], options["account"], name=options["name"]
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"created {user.email} owning account {account.name!r} ({account.public_id})")
