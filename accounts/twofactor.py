"""Optional TOTP two-factor authentication (django-otp's TOTP devices, QR codes by segno)."""

from __future__ import annotations

import logging

import segno
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import User

logger = logging.getLogger(__name__)


def confirmed_device(user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def has_2fa(user: User) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def pending_device(user: User) -> TOTPDevice:
    """The unconfirmed device being set up, created on first use."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)
    return device


def qr_svg_data_uri(device: TOTPDevice) -> str:
    return str(segno.make(device.config_url, error="m").svg_data_uri(scale=4, border=2))


def verify(device: TOTPDevice, code: str) -> bool:
    code = "".join(code.split())
    return code.isdigit() and len(code) == device.digits and bool(device.verify_token(code))


def enable(user: User, device: TOTPDevice, code: str) -> bool:
    if not verify(device, code):
        return False
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
    logger.info("twofactor.enabled", extra={"user_id": user.pk})
    return True


def disable(user: User) -> None:
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
    logger.info("twofactor.disabled", extra={"user_id": user.pk})
