"""In a real browser (Debian's Chromium through Playwright): sign in to admin, disable the
pam route's primary, see chat answered by the first fallback, restore the previous chain
from admin, see the primary answer again."""

import os

import pytest

from modelhub.models import ConfigChange, Route
from tests.e2e.conftest import needs_postgres

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "e2e-browser-pw"

pytestmark = [
    needs_postgres,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def pam(e2e_hub, django_user_model):
    django_user_model.objects.create_superuser("e2e-admin", "ops@localhost", PASSWORD)
    e2e_hub.route("pam", [e2e_hub.model("primary-m", "anthropic"), e2e_hub.model("fallback-m", "google")])
    return Route.objects.get(name="pam")


def browser_page(playwright, viewport: dict | None = None):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    return browser.new_page(viewport=viewport) if viewport else browser.new_page()


def sign_in(page, server):
    page.goto(f"{server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "e2e-admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")


def disable_primary_entry(page, server, route):
    page.goto(f"{server.url}/admin/modelhub/route/{route.pk}/change/")
    page.uncheck("#id_entries-0-enabled")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")


def restore_previous_chain(page, route) -> str:
    page.check(f"input[name=_selected_action][value='{route.pk}']")
    page.select_option("select[name=action]", "restore_previous_chain")
    page.click("button[name=index]")
    return page.inner_text(".messagelist")


@pytest.mark.parametrize("hub_servers", [1], indirect=True)
def test_disable_primary_in_admin_then_restore_the_previous_chain(pam, e2e_hub, hub_servers):
    sync_api = pytest.importorskip("playwright.sync_api")
    server = hub_servers[0]
    assert server.chat(e2e_hub.key)["model"] == "primary-m"
    with sync_api.sync_playwright() as playwright:  # no ORM inside: Playwright runs an event loop
        page = browser_page(playwright)
        sign_in(page, server)
        disable_primary_entry(page, server, pam)
        after_disable = server.chat(e2e_hub.key)
        message = restore_previous_chain(page, pam)
        after_restore = server.chat(e2e_hub.key)
    assert (after_disable["model"], after_disable["source"]) == ("fallback-m", "primary")
    assert "Restored the previous chain of pam" in message
    assert (after_restore["model"], after_restore["source"]) == ("primary-m", "primary")
    actions = list(ConfigChange.objects.filter(route="pam").values_list("action", "actor"))
    assert actions == [("restore_chain", "e2e-admin"), ("change", "e2e-admin")]


@pytest.mark.parametrize("hub_servers", [1], indirect=True)
def test_api_docs_render_every_endpoint_from_the_apps_own_files(hub_servers):
    sync_api = pytest.importorskip("playwright.sync_api")
    server = hub_servers[0]
    with sync_api.sync_playwright() as playwright:
        page = browser_page(playwright)
        fetched = []
        page.on("request", lambda request: fetched.append(request.url))
        page.goto(f"{server.url}/api/docs/")
        page.wait_for_selector(".opblock-summary-path")
        paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert {"/api/v1/pam/chat", "/v1/chat/completions", "/v1/models", "/api/v1/admin/models/set-primary"} <= {
        p.replace("\u200b", "") for p in paths
    }
    assert fetched and all(url.startswith(server.url) for url in fetched)  # nothing from a CDN
