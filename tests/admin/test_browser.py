"""The admin end to end in headless Chromium: log in, find stuck work, cancel it, grant credits,
and look at the overview. Debian's Chromium is driven by Playwright, which downloads nothing."""

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from playwright.sync_api import Page, expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

from credits.models import CreditAccount, CreditTransaction
from enrichment.models import Enrichment, Status
from tests.admin.conftest import age, finish_with_data, request_enrichments
from tests.conftest import Tenant

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def require_chromium() -> Path:
    """A missing browser fails the test, never skips it: `make test` installs Chromium."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}: install it with "
            "`apt-get install -y chromium` (`make test` does this, in bin/test-prepare)."
        )
    return CHROMIUM


@pytest.fixture
def scene(make_tenant: Callable[..., Tenant], monkeypatch: pytest.MonkeyPatch) -> Tenant:
    """A tenant with pending and finished enrichments and charges spread over two weeks, and
    another one with an enrichment stuck for two hours."""
    # Nothing consumes the broker here: requested enrichments are left pending, unqueued.
    monkeypatch.setattr("enrichment.services.enqueue_enrichments", lambda *args, **kwargs: None)
    age(request_enrichments(make_tenant(credits=10), 1), seconds=2 * 3600)
    tenant = make_tenant(credits=500)
    request_enrichments(tenant, 3)
    for days_ago, enrichment in enumerate(request_enrichments(tenant, 12, field="phones")):
        finish_with_data(enrichment, f"+4420790{days_ago:05d}")
        if days_ago % 3:
            then = timezone.now() - timedelta(days=days_ago)
            CreditTransaction.objects.filter(reference_id=enrichment.pk).update(created_at=then)
    return tenant


@pytest.mark.browser
def test_staff_cancel_pending_work_and_grant_credits_in_the_browser(
    live_server: LiveServer, admin_user: AbstractBaseUser, scene: Tenant
) -> None:
    chromium = require_chromium()
    # The ORM is not used while the browser runs: Playwright's event loop would make Django
    # refuse synchronous queries.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(15_000)
        try:
            drive(page, live_server.url, scene)
        finally:
            browser.close()

    statuses = list(Enrichment.objects.values_list("status", flat=True))
    assert sorted(statuses) == sorted(
        [Status.CANCELLED] * 3 + [Status.FINISHED] * 12 + [Status.PENDING]
    )
    grant = CreditTransaction.objects.get(memo="Browser goodwill")
    assert (grant.amount, grant.actor) == (42, admin_user)
    account = CreditAccount.objects.get(pk=scene.organization.pk)
    assert (account.balance, account.reserved) == (500 - 120 + 42, 0)


def drive(page: Page, url: str, scene: Tenant) -> None:
    page.goto(f"{url}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    expect(page.get_by_role("link", name="Enrichment overview")).to_be_visible()

    page.goto(f"{url}/admin/enrichment/enrichment/")
    filters = page.locator("#changelist-filter")
    filters.get_by_role("link", name="Pending", exact=True).click()
    expect(page.locator("#result_list tbody tr")).to_have_count(4)
    filters.get_by_role("link", name=scene.organization.name, exact=True).click()
    expect(page).to_have_url(
        f"{url}/admin/enrichment/enrichment/"
        f"?organization__id__exact={scene.organization.pk}&status__exact=pending"
    )
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    page.check("#action-toggle")
    page.select_option("select[name=action]", "cancel")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("Cancelled 3 enrichment(s)")

    page.goto(f"{url}/admin/credits/creditaccount/{scene.organization.pk}/change/")
    page.get_by_role("link", name="Grant or adjust credits").click()
    page.fill("#id_amount", "42")
    page.fill("#id_memo", "Browser goodwill")
    page.click("input[type=submit]")
    expect(page.locator(".messagelist")).to_contain_text("the balance is now 422")
    ledger = page.locator(".inline-group")
    expect(ledger.locator("tbody tr").first).to_contain_text("Browser goodwill")
    page.get_by_role("link", name="Check ledger").click()
    expect(page.locator(".messagelist")).to_contain_text("the ledger checks out")

    page.goto(f"{url}/admin/")
    page.get_by_role("link", name="Enrichment overview").click()
    expect(page.locator("svg.chart rect.bar")).to_have_count(9)
    expect(page.locator("#pending")).to_contain_text("2\xa0hours")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "admin-overview.png", full_page=True)
