from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_the_models_and_the_migrations_agree() -> None:
    output = StringIO()

    call_command("makemigrations", "--check", "--dry-run", stdout=output)

    assert "No changes detected" in output.getvalue()
