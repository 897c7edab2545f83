"""The collector while PostgreSQL is down: 503 with Retry-After and CORS for what it must look up.

Stopping the session's PostgreSQL would break the test session, so the collector here runs
against a throwaway PostgreSQL (the ``pgserver`` package's binaries) holding a copy of the
test database, stopped and started again by the test.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection

from accounts.apikeys import create_api_key
from accounts.models import Site
from analytics.tests.collector_fixtures import BROWSER_UA, make_site, purge_events_queue, start_server, stop_server
from spinnakr.embedded import postgres as embedded_postgres

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@dataclass
class Postgres:
    data: Path
    sockets: Path
    log: Path

    @property
    def url(self) -> str:
        return f"postgres://postgres@/spinnakr?host={self.sockets}"

    def start(self) -> None:
        options = f"-c listen_addresses='' -c unix_socket_directories='{self.sockets}'"
        command = [str(embedded_postgres.bin_path("pg_ctl")), "start", "-w", "-D", str(self.data), "-l", str(self.log)]
        embedded_postgres.run_as_pg([*command, "-o", options], check=True)

    def stop(self) -> None:
        embedded_postgres.run_as_pg(
            [str(embedded_postgres.bin_path("pg_ctl")), "stop", "-w", "-m", "immediate", "-D", str(self.data)]
        )


@pytest.fixture
def throwaway_postgres() -> Iterator[Postgres]:
    """A PostgreSQL of its own (short socket path: the kernel's limit), stopped and removed after the test."""
    root = Path(tempfile.mkdtemp(prefix="spk-pg-", dir="/tmp"))
    root.chmod(0o755)
    server = Postgres(root / "data", root / "run", root / "postgres.log")
    for directory in (server.data, server.sockets):
        directory.mkdir()
        embedded_postgres.chown_for_pg(directory)
    server.log.touch()
    embedded_postgres.chown_for_pg(server.log)
    initdb = [
        str(embedded_postgres.bin_path("initdb")),
        "-D",
        str(server.data),
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
    ]
    embedded_postgres.run_as_pg([*initdb, "--locale=C"], check=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def copy_test_database(target: Postgres) -> None:
    """The test database (its committed sites and keys) into ``target``'s database ``spinnakr``."""
    params = connection.settings_dict
    source = ["-h", params["HOST"], "-U", params["USER"] or "postgres", "-d", params["NAME"]]
    into = ["-h", str(target.sockets), "-U", "postgres"]
    subprocess.run([str(embedded_postgres.bin_path("createdb")), *into, "spinnakr"], check=True)
    dump = subprocess.run(
        [str(embedded_postgres.bin_path("pg_dump")), "--no-owner", *source], check=True, capture_output=True
    )
    # Column options are planner hints the copy does not need, and a server may carry ones a stock
    # PostgreSQL refuses (the CI machine's sets "pg_attver" on every column).
    schema = re.sub(rb"(?m)^ALTER TABLE ONLY \S+ ALTER COLUMN \S+ SET \(.*\);$", b"", dump.stdout)
    psql = [str(embedded_postgres.bin_path("psql")), *into, "-d", "spinnakr", "-q", "-v", "ON_ERROR_STOP=1"]
    loaded = subprocess.run(psql, input=schema, capture_output=True)
    assert loaded.returncode == 0, loaded.stderr.decode(errors="replace")[-2000:]


def batch(domain: str, api_key: str, headers: dict[str, str]) -> httpx.Request:
    event = {"name": "pageview", "url": f"https://{domain}/", "domain": domain, "visitor_id": "v"}
    body = json.dumps({"events": [event]}).encode()
    return httpx.Request("POST", "/api/events", content=body, headers={**headers, "authorization": f"Bearer {api_key}"})


def requests_needing_the_database(domain: str, site_key: str, cold_key: str, warm_key: str) -> list[httpx.Request]:
    """/api/event for a domain and the pixel for a key the site cache lacks, /api/events with an API
    key the key cache lacks, and with one it holds but for a domain the site cache lacks."""
    headers = {"origin": f"https://{domain}", "user-agent": BROWSER_UA}
    event = {"n": "pageview", "u": f"https://{domain}/", "d": domain}
    return [
        httpx.Request("POST", "/api/event", content=json.dumps(event).encode(), headers=headers),
        httpx.Request("GET", f"/api/pixel/{site_key}.gif", headers=headers),
        batch(domain, cold_key, headers),
        batch(domain, warm_key, headers),
    ]


def send_all(url: str, requests: list[httpx.Request]) -> list[httpx.Response]:
    with httpx.Client(base_url=url, timeout=30) as client:
        return [
            client.send(client.build_request(r.method, r.url, headers=r.headers, content=r.content)) for r in requests
        ]


def summary(response: httpx.Response) -> tuple[int, Any, str | None, str | None]:
    return (
        response.status_code,
        response.json(),
        response.headers.get("retry-after"),
        response.headers.get("access-control-allow-origin"),
    )


def test_with_postgresql_down_lookups_answer_503_and_after_its_restart_202(
    throwaway_postgres: Postgres, tmp_path: Path
) -> None:
    purge_events_queue()
    domain_site, key_site = make_site(), make_site()
    warm_site = Site.objects.create(account=domain_site.account, domain=f"warm-{domain_site.domain}")
    _, cold_key = create_api_key(domain_site.account, "cold", ("events:write",))
    _, warm_key = create_api_key(domain_site.account, "warm", ("events:write",))
    copy_test_database(throwaway_postgres)
    server = start_server(tmp_path, {"DATABASE_URL": throwaway_postgres.url})
    requests = requests_needing_the_database(domain_site.domain, key_site.site_key, cold_key, warm_key)
    try:
        warmed = send_all(server.url, [batch(warm_site.domain, warm_key, {})])  # the key cache now holds warm_key
        throwaway_postgres.stop()
        while_down = send_all(server.url, requests)
        throwaway_postgres.start()
        after_restart = send_all(server.url, requests)
    finally:
        stop_server(server)

    assert warmed[0].status_code == 202
    unavailable = (503, {"error": "service unavailable, retry later"}, "2", f"https://{domain_site.domain}")
    assert [summary(response) for response in while_down] == [unavailable] * 4
    assert [response.status_code for response in after_restart] == [202, 200, 202, 202]
