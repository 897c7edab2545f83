from __future__ import annotations

import os
import subprocess
import sys

from django.conf import settings
from django.contrib.auth.hashers import identify_hasher
from django.test import Client

from accounts.middleware import build_policy
from accounts.models import Site, User
from spinnakr import settings as project_settings


def test_the_project_hashes_passwords_with_argon2(db, settings):
    settings.PASSWORD_HASHERS = project_settings.PASSWORD_HASHERS
    user = User.objects.create_user("hash@example.com", "a long pass phrase 9")
    assert identify_hasher(user.password).algorithm == "argon2"


def test_forms_refuse_a_post_without_the_csrf_token(owner, site):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    responses = [
        client.post("/sites/shop.example/settings/rotate-key/"),
        client.post("/sites/new/", {"domain": "csrf.example", "timezone": "UTC"}),
        client.post("/accounts/logout/"),
    ]
    assert [r.status_code for r in responses] == [403, 403, 403]
    assert not Site.objects.filter(domain="csrf.example").exists()


def test_the_login_form_needs_the_csrf_token(owner):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/login/", {"username": owner.email, "password": "x"})
    assert response.status_code == 403


def test_the_content_security_policy_allows_only_self(client, db, settings):
    settings.CSP_ENABLED = True
    response = client.get("/accounts/login/")
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self';" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy


def test_the_policy_allows_websockets_to_the_service(db):
    assert "connect-src 'self' wss://stats.example.com" in build_policy("https://stats.example.com")


def production_env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "SPINNAKR_ENV": "production",
        "SECRET_KEY": "x7" * 20 + "k9-Q!zPq_L3vR8sW2mN4bT6yU1cE5hJ0gF",
        "ALLOWED_HOSTS": "stats.example.com",
        "SITE_URL": "https://stats.example.com",
        # Neither check --deploy nor django.setup() opens a connection; the URLs only have to be well-formed.
        "DATABASE_URL": "postgres://nobody@localhost/spinnakr",
        "REDIS_URL": "redis://localhost:6379/0",
        **extra,
    }
    env.pop("PYTEST_VERSION", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def start_django(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "import os, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'spinnakr.settings'); django.setup()"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )


def test_production_warns_at_start_up_when_no_proxy_is_trusted():
    without = start_django(production_env(TRUSTED_PROXIES=""))
    with_proxies = start_django(production_env(TRUSTED_PROXIES="10.0.0.0/8"))

    assert (without.returncode, with_proxies.returncode) == (0, 0), without.stderr + with_proxies.stderr
    assert "WARNING accounts.apps settings.trusted_proxies_empty" in without.stderr
    assert "TRUSTED_PROXIES and FORWARDED_ALLOW_IPS" in without.stderr
    assert "trusted_proxies_empty" not in with_proxies.stderr


def test_check_deploy_is_clean_with_production_settings():
    env = production_env()
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_api_docs_get_a_policy_that_lets_their_inline_code_run(client, db, settings):
    settings.CSP_ENABLED = True
    policy = client.get("/api/docs/")["Content-Security-Policy"]
    assert "script-src 'self' 'unsafe-inline'" in policy
    assert "worker-src 'self' blob:" in policy


def test_no_policy_is_sent_when_disabled(client, db, settings):
    settings.CSP_ENABLED = False
    assert "Content-Security-Policy" not in client.get("/accounts/login/")
