"""Settings fail loudly, naming the variable, on every malformed value."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings

from spinnakr import embedded
from spinnakr.embedded import postgres as embedded_postgres
from spinnakr.embedded import valkey as embedded_valkey

LOAD_SETTINGS = "import django; django.setup(); print('ok')"


def load_settings(**overrides: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "spinnakr.settings", **overrides}
    return subprocess.run(
        [sys.executable, "-c", LOAD_SETTINGS],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=settings.BASE_DIR,
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DEBUG", "maybe", "DEBUG='maybe' is not a boolean"),
        ("PORT", "eighty", "PORT='eighty' is not an integer"),
        ("PORT", "70000", "PORT=70000 is above the maximum"),
        (
            "DATABASE_URL",
            "mysql://db/spinnakr",
            "DATABASE_URL='mysql://db/spinnakr' must start with one of postgres://",
        ),
        ("DATABASE_URL", "postgres://db:notaport/x", "DATABASE_URL='postgres://db:notaport/x' has an invalid port"),
        ("DATABASE_URL", "postgres://db:5432", "names no database"),
        ("REDIS_URL", "http://cache:6379/0", "REDIS_URL='http://cache:6379/0' must start with one of redis://"),
        ("REDIS_URL", "redis://cache:6379/zero", "has a database that is not a number"),
        ("REDIS_URLS", "redis://a:6379,http://b:6379", "REDIS_URLS: 'http://b:6379' must start with one of redis://"),
        ("REDIS_URLS", "redis://a:6379,redis://:6379", "REDIS_URLS: 'redis://:6379' names no host"),
        ("REDIS_URLS", "redis://a:6379/0,redis://A", "REDIS_URLS: 'redis://A' names the same server as an earlier"),
        ("REDIS_URLS", "redis://a:6379/zero", "REDIS_URLS='redis://a:6379/zero' has a database that is not a number"),
        ("REDIS_URLS", "redis+sentinel://rollups-1/0", "REDIS_SENTINELS is required here: at least one host:port"),
        ("REDIS_SENTINELS", "sentinel.example", "REDIS_SENTINELS: 'sentinel.example' is not host:port"),
        ("REDIS_SENTINELS", "10.0.0.1:port", "REDIS_SENTINELS: '10.0.0.1:port' is not host:port"),
        ("REDIS_URLS", "redis-cluster://a:7001,redis://b", "REDIS_URLS: a redis-cluster:// entry must be the only one"),
        ("REDIS_URLS", "redis-cluster://a:7001/2", "REDIS_URLS: a Redis Cluster has database 0 only"),
        ("CELERY_BROKER_URL", "sqs://queue", "CELERY_BROKER_URL='sqs://queue' must start with one of amqp://"),
        ("SPINNAKR_ENV", "staging", "SPINNAKR_ENV='staging' must be 'development' or 'production'"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL='LOUD' must be"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT='xml' must be 'plain' or 'json'"),
        ("SITE_URL", "ftp://example.com", "SITE_URL='ftp://example.com' must start with http"),
        ("WORKER_NICE", "low", "WORKER_NICE='low' is not an integer"),
        ("WORKER_NICE", "20", "WORKER_NICE=20 is above the maximum of 19"),
        ("TRUSTED_PROXIES", "proxy.example", "TRUSTED_PROXIES: 'proxy.example' is not an address or network"),
        ("FORWARDED_ALLOW_IPS", "proxy.example", "FORWARDED_ALLOW_IPS: 'proxy.example' is not an address, a network"),
    ],
)
def test_it_rejects_a_malformed_value_naming_the_variable(variable: str, value: str, message: str) -> None:
    result = load_settings(**{variable: value})

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_it_hides_the_password_of_a_rejected_url() -> None:
    result = load_settings(DATABASE_URL="mysql://user:hunter2@db/x")

    assert result.returncode != 0
    assert "hunter2" not in result.stderr
    assert "user:***@db" in result.stderr


def test_production_requires_a_secret_key_and_hosts() -> None:
    no_key = load_settings(SPINNAKR_ENV="production", SECRET_KEY="", ALLOWED_HOSTS="spinnakr.example")
    no_hosts = load_settings(SPINNAKR_ENV="production", SECRET_KEY="x" * 60, ALLOWED_HOSTS="")

    assert "SECRET_KEY must be set in production" in no_key.stderr
    assert "ALLOWED_HOSTS must list" in no_hosts.stderr


def test_valid_values_load() -> None:
    result = load_settings(
        DEBUG="yes",
        PORT="8123",
        REDIS_URL="redis://cache:6379/2",
        CELERY_BROKER_URL="amqp://guest:guest@mq:5672//",
        TRUSTED_PROXIES="10.0.0.0/8,192.0.2.1",
        FORWARDED_ALLOW_IPS="*",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL") or os.environ.get("REDIS_URL")), reason="this run names its servers"
)
def test_unset_urls_mean_the_embedded_servers() -> None:
    assert settings.DATABASES["default"]["HOST"] == str(embedded_postgres.socket_dir())
    assert embedded_valkey.redis_url(0) == settings.REDIS_URL
    # The queues have a Valkey of their own: the worker's rollup scripts never hold up a publish.
    assert (
        str(settings.CELERY_BROKER_URL)
        == f"redis+socket://{embedded_valkey.socket_path(embedded_valkey.BROKER)}?virtual_host=11"
    )
    assert embedded.wanted() == embedded.Wanted(postgres=True, redis=True, broker=True)


SHOW_BROKER = (
    "import django; django.setup(); from django.conf import settings; from spinnakr import embedded; "
    "print(settings.CELERY_BROKER_URL); print(embedded.wanted())"
)


@pytest.mark.parametrize(
    ("overrides", "broker", "embedded_broker"),
    [
        ({"REDIS_URL": "redis://cache:6379/2"}, "redis://cache:6379/13", False),
        ({"CELERY_BROKER_URL": "amqp://guest:guest@mq:5672//"}, "amqp://guest:guest@mq:5672//", False),
        ({"REDIS_URL": "redis://cache:6379/0", "CELERY_BROKER_URL": "amqp://mq//"}, "amqp://mq//", False),
    ],
)
def test_a_named_redis_or_broker_keeps_the_queues_there(
    overrides: dict[str, str], broker: str, embedded_broker: bool
) -> None:
    env = {key: value for key, value in os.environ.items() if key not in {"REDIS_URL", "CELERY_BROKER_URL"}}
    result = subprocess.run(
        [sys.executable, "-c", SHOW_BROKER],
        env={**env, "DJANGO_SETTINGS_MODULE": "spinnakr.settings", **overrides},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=settings.BASE_DIR,
    )

    assert result.returncode == 0, result.stderr
    url, wanted = result.stdout.splitlines()
    assert url == broker
    assert f"broker={embedded_broker}" in wanted


SHOW_REDIS = (
    "import django; django.setup(); from django.conf import settings as s; print(s.ROLLUP_REDIS_URLS); "
    "print([s.REDIS_DATA_URL, s.CACHES, s.CHANNEL_LAYERS, s.CELERY_BROKER_URL])"
)


def show_redis(show: str = "None", **overrides: str) -> list[str]:
    """The Redis settings, and the expression ``show`` of settings ``s``, in a process with ``overrides``."""
    env = {key: value for key, value in os.environ.items() if key not in {"REDIS_URL", "REDIS_URLS"}}
    result = subprocess.run(
        [sys.executable, "-c", f"{SHOW_REDIS}; print({show})"],
        env={**env, "DJANGO_SETTINGS_MODULE": "spinnakr.settings", "SPINNAKR_TESTING": "0", **overrides},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=settings.BASE_DIR,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_redis_urls_moves_the_rollups_alone() -> None:
    default = show_redis(REDIS_URL="redis://cache:6379/2")
    spread = show_redis(REDIS_URL="redis://cache:6379/2", REDIS_URLS=" redis://10.0.0.1:7001, rediss://:pw@r2:6380/3 ")

    assert default[0] == "()"
    assert spread[0] == "('redis://10.0.0.1:7001/0', 'rediss://:pw@r2:6380/3')"
    assert spread[1] == default[1]


def test_a_master_behind_sentinel_is_a_rollups_server_named_by_its_master() -> None:
    spread = show_redis(
        REDIS_URL="redis://cache:6379/2",
        REDIS_URLS="redis+sentinel://:pw@Rollups-1/2,redis://10.0.0.1:7001",
        REDIS_SENTINELS="10.0.0.21:26379, [::1]:26380",
        show="s.REDIS_SENTINELS",
    )

    assert spread[0] == "('redis+sentinel://:pw@Rollups-1/2', 'redis://10.0.0.1:7001/0')"
    assert spread[2] == "(('10.0.0.21', 26379), ('::1', 26380))"


def test_redis_urls_of_one_cluster_keeps_its_seed_as_given() -> None:
    default = show_redis(REDIS_URL="redis://cache:6379/2")
    cluster = show_redis(REDIS_URL="redis://cache:6379/2", REDIS_URLS="rediss-cluster://:pw@node1:7000")

    assert cluster[0] == "('rediss-cluster://:pw@node1:7000',)"
    assert cluster[1] == default[1]


@pytest.mark.django_db
def test_tests_use_their_own_redis_databases_and_queues() -> None:
    # The database's name turns into the test database's only once a test asks for the database.
    assert settings.TESTING
    assert settings.REDIS_DATA_URL != settings.REDIS_URL
    assert settings.QUEUE_PREFIX
    assert settings.EVENTS_QUEUE == f"{settings.QUEUE_PREFIX}events"
    assert settings.DATABASES["default"]["NAME"].startswith("test_")
