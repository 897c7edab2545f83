"""The Sites API counts against the API key's hourly limit, one counter shared with the Stats API."""

from __future__ import annotations

import time

from django.test import Client

from analytics.models import APIRateLimit


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def test_the_sites_api_sends_the_rate_limit_headers_and_answers_429_past_the_limit(
    client: Client, account, site, write_key
) -> None:
    APIRateLimit.objects.create(account=account, requests_per_hour=3)
    auth = bearer(write_key[1])
    answers = [
        client.get("/api/v1/sites", headers=auth),
        client.get("/api/v1/sites/shop.example", headers=auth),
        client.post("/api/v1/sites", {"domain": "new.example"}, headers=auth),
        client.put("/api/v1/sites/shop.example", {"timezone": "UTC"}, content_type="application/json", headers=auth),
    ]

    assert [answer.status_code for answer in answers] == [200, 200, 201, 429]
    assert [answer["X-RateLimit-Remaining"] for answer in answers] == ["2", "1", "0", "0"]
    assert {answer["X-RateLimit-Limit"] for answer in answers} == {"3"}
    assert int(answers[0]["X-RateLimit-Reset"]) > time.time()
    assert int(answers[3]["Retry-After"]) >= 1
    assert answers[3].json() == {"error": "Too many requests: the API key's hourly limit is used up."}
    assert client.get("/api/v1/sites/teams", headers=auth).status_code == 429


def test_one_counter_per_key_covers_the_sites_and_the_stats_apis(client: Client, account, site, read_key) -> None:
    APIRateLimit.objects.create(account=account, requests_per_hour=2)
    auth = bearer(read_key[1])
    stats = client.get("/api/v1/stats/realtime/visitors", {"site_id": "shop.example"}, headers=auth)
    sites = client.get("/api/v1/sites", headers=auth)
    stats_again = client.get("/api/v1/stats/realtime/visitors", {"site_id": "shop.example"}, headers=auth)

    assert [stats.status_code, sites.status_code, stats_again.status_code] == [200, 200, 429]
    assert sites["X-RateLimit-Remaining"] == "0"


def test_a_request_without_a_valid_key_is_not_counted(client: Client, account, site, read_key) -> None:
    APIRateLimit.objects.create(account=account, requests_per_hour=1)
    refused = client.post("/api/v1/sites", {"domain": "nope.example"}, headers=bearer(read_key[1]))  # lacks sites:write
    answer = client.get("/api/v1/sites", headers=bearer(read_key[1]))

    assert refused.status_code == 403
    assert "X-RateLimit-Limit" not in refused
    assert (answer.status_code, answer["X-RateLimit-Remaining"]) == (200, "0")
