from __future__ import annotations

from django.db import connection

from accounts.apikeys import authenticate_key
from accounts.models import APIKey


def test_creating_a_key_shows_the_secret_once(owner_client, account):
    page = f"/accounts/{account.public_id}/keys/"
    response = owner_client.post(
        page, {"name": "Deploy", "scopes": ["stats:read", "sites:write"], "expires_in_days": "30"}
    )
    secret = response.context["created_secret"]
    assert secret in response.content.decode()
    key = authenticate_key(secret)
    assert key is not None
    assert (key.account, key.scopes, key.expires_at is not None) == (account, ["stats:read", "sites:write"], True)
    again = owner_client.get(page).content.decode()
    assert secret not in again
    assert f"spk_{key.prefix}_" in again
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apikey")
        assert secret.removeprefix(f"spk_{key.prefix}_") not in str(cursor.fetchall())


def test_a_key_needs_a_scope(owner_client, account):
    owner_client.post(f"/accounts/{account.public_id}/keys/", {"name": "None"})
    assert not APIKey.objects.exists()


def test_revoking_a_key(admin_client_, account, write_key):
    key, raw = write_key
    response = admin_client_.post(f"/accounts/{account.public_id}/keys/{key.prefix}/revoke/")
    assert response.status_code == 302
    assert authenticate_key(raw) is None


def test_a_viewer_gets_403_on_the_keys_pages(viewer_client, account, write_key):
    key, raw = write_key
    responses = [
        viewer_client.get(f"/accounts/{account.public_id}/keys/"),
        viewer_client.post(f"/accounts/{account.public_id}/keys/", {"name": "X", "scopes": ["stats:read"]}),
        viewer_client.post(f"/accounts/{account.public_id}/keys/{key.prefix}/revoke/"),
    ]
    assert [r.status_code for r in responses] == [403, 403, 403]
    assert authenticate_key(raw) == key


def test_an_outsider_gets_404_on_the_keys_pages(outsider_client, account, write_key, outsider_key):
    key, raw = write_key
    responses = [
        outsider_client.get(f"/accounts/{account.public_id}/keys/"),
        outsider_client.post(f"/accounts/{account.public_id}/keys/", {"name": "X", "scopes": ["stats:read"]}),
        outsider_client.post(f"/accounts/{account.public_id}/keys/{key.prefix}/revoke/"),
    ]
    assert [r.status_code for r in responses] == [404, 404, 404]
    assert authenticate_key(raw) == key


def test_a_key_of_another_account_cannot_be_revoked_through_ones_own(owner_client, account, outsider_key):
    key, raw = outsider_key
    response = owner_client.post(f"/accounts/{account.public_id}/keys/{key.prefix}/revoke/")
    assert response.status_code == 404
    assert authenticate_key(raw) == key
