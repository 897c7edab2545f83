"""The accounts pages in headless Chromium at phone width, light and dark.

Django's live server (with static files) against the test database. Each page
must fit 375 px without sideways scrolling and show its main heading; the
log-in form is used for real.
"""

from __future__ import annotations

import pytest

from accounts.tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PAGES = [
    ("/sites/new/", "Add a site"),
    ("/sites/{domain}/settings/", "Settings of"),
    ("/sites/{domain}/snippet/", "Tracking tag for"),
    ("/accounts/{account}/team/", "Team of"),
    ("/accounts/{account}/keys/", "API keys of"),
    ("/accounts/2fa/", "Security"),
    ("/accounts/password_change/", "Change your password"),
]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_pages_fit_a_phone(live_server, owner, account, site, scheme, new_context):
    context = new_context(viewport={"width": 375, "height": 740}, color_scheme=scheme)
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 375
    page.fill("#id_username", owner.email)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/**")
    widths = {}
    for path, heading in PAGES:
        page.goto(live_server.url + path.format(domain=site.domain, account=account.public_id))
        assert heading in page.inner_text("h1")
        widths[path] = page.evaluate("document.scrollingElement.scrollWidth")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert widths == {path: 375 for path, _ in PAGES}
    assert background == {"light": "rgb(247, 247, 249)", "dark": "rgb(17, 19, 24)"}[scheme]
