"""Tenancy: accounts (the customers), users, memberships, sites and API keys.

Every tenant-owned row carries its account directly, and every index on it
leads with the account (or the site, which belongs to one account).
"""

from __future__ import annotations

import secrets
import uuid
import zoneinfo
from typing import Any, ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone as django_timezone


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        if not email:
            raise ValueError("an e-mail address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        extra.setdefault("email_verified", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Logs in with the e-mail address; belongs to accounts through memberships."""

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    email_verified = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=django_timezone.now)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    def __str__(self) -> str:
        return self.email


class Plan(models.TextChoices):
    FREE = "free", "Free"
    GROWTH = "growth", "Growth"
    BUSINESS = "business", "Business"
    ENTERPRISE = "enterprise", "Enterprise"


class Account(models.Model):
    """The tenant: a customer with its plan, quota and retention."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    plan = models.CharField(max_length=20, choices=Plan.choices, default=Plan.FREE)
    monthly_event_quota = models.PositiveBigIntegerField(default=1_000_000)
    retention_days = models.PositiveIntegerField(default=3 * 365)
    suspended = models.BooleanField(default=False)
    created = models.DateTimeField(default=django_timezone.now)

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    ADMIN = "admin", "Admin"
    OWNER = "owner", "Owner"


ROLE_RANK = {Role.VIEWER: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Membership(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created = models.DateTimeField(default=django_timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "user"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.account} ({self.role})"


class Invitation(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(default=django_timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["account", "email"], name="invitation_account_email")]

    def __str__(self) -> str:
        return f"{self.email} to {self.account}"


def new_site_key() -> str:
    return "pk_" + secrets.token_urlsafe(15)


def timezone_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in sorted(zoneinfo.available_timezones())]


class Site(models.Model):
    """A website of an account. ``site_key`` is public: it goes into the tracking tag."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="sites")
    domain = models.CharField(max_length=255, unique=True)
    timezone = models.CharField(max_length=64, default="UTC")
    site_key = models.CharField(max_length=40, unique=True, default=new_site_key)
    allowed_origins = ArrayField(models.CharField(max_length=255), default=list, blank=True)
    public = models.BooleanField(default=False)
    created = models.DateTimeField(default=django_timezone.now)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["account", "domain"], name="site_account_domain")]

    def __str__(self) -> str:
        return self.domain


class Scope(models.TextChoices):
    STATS_READ = "stats:read", "Read statistics"
    SITES_WRITE = "sites:write", "Manage sites and goals"
    EVENTS_WRITE = "events:write", "Send events"
    FEED_READ = "feed:read", "Read the live feed"


class APIKey(models.Model):
    """An API key: ``spk_<prefix>_<secret>``; only a hash of the whole key is kept."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    scopes = ArrayField(models.CharField(max_length=20, choices=Scope.choices), default=list)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(default=django_timezone.now)
    last_used = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        indexes = [models.Index(fields=["account", "created"], name="apikey_account_created")]

    def __str__(self) -> str:
        return f"{self.name} (spk_{self.prefix}_…)"
