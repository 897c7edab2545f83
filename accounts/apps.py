from __future__ import annotations

import logging

from django.apps import AppConfig
from django.conf import settings

logger = logging.getLogger(__name__)


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the OpenAPI description of API key authentication.
        from accounts import api_schema  # noqa: F401

        if settings.PRODUCTION and not settings.TRUSTED_PROXIES:
            # Kept a warning, not a refusal, so a first deployment still starts: docs/operations.md.
            logger.warning(
                "settings.trusted_proxies_empty",
                extra={"hint": "set TRUSTED_PROXIES and FORWARDED_ALLOW_IPS to the load balancers' addresses"},
            )
