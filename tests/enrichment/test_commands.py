from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.utils import timezone
from pytest_django import DjangoCaptureOnCommitCallbacks, Settings

from credits.selectors import credit_account_get, credit_history
from enrichment.models import Enrichment, Status
from enrichment.services import enrichments_request
from organizations.models import ApiKey, Organization
from organizations.services import api_key_authenticate, hash_api_key
from persons.models import Person
from providers.adapters import sandbox
from tests.commands import run_command, run_json
from tests.conftest import Tenant
from tests.enrichment.conftest import assert_ledger_invariants
from tests.factories import PersonFactory, UserFactory

pytestmark = pytest.mark.django_db

TIMEOUT = 900


@pytest.fixture
def stuck(tenant: Tenant) -> Enrichment:
    """A pending enrichment queued long before the timeout, whose job was lost."""
    person = PersonFactory(organization=tenant.organization)
    [enrichment] = enrichments_request(
        organization=tenant.organization, user=tenant.user, person_ids=[person.pk], field="phones"
    ).enrichments
    Enrichment.objects.filter(pk=enrichment.pk).update(
        queued_at=timezone.now() - timedelta(seconds=TIMEOUT + 60)
    )
    enrichment.refresh_from_db()
    return enrichment


def test_requeue_dry_run_lists_without_changing_anything(stuck: Enrichment) -> None:
    Enrichment.objects.filter(pk=stuck.pk).update(attempts=1)
    before = Enrichment.objects.values().get(pk=stuck.pk)

    out = run_json("requeue_timed_out_enrichments", "--older-than", str(TIMEOUT), "--dry-run")

    assert out == {
        "requeued": 1,
        "timedOut": 0,
        "dryRun": True,
        "requeuedIds": [str(stuck.pk)],
        "timedOutIds": [],
    }
    assert Enrichment.objects.values().get(pk=stuck.pk) == before


def test_requeue_queues_a_stuck_enrichment_again(
    stuck: Enrichment, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    Enrichment.objects.filter(pk=stuck.pk).update(
        attempts=2, started_at=timezone.now() - timedelta(hours=1), claim_token="lost-job"
    )

    with django_capture_on_commit_callbacks() as callbacks:
        out = run_json("requeue_timed_out_enrichments", "--max-attempts", "3")

    assert out["requeuedIds"] == [str(stuck.pk)]
    assert (out["requeued"], out["timedOut"], out["dryRun"]) == (1, 0, False)
    # The job is published only once the transaction has committed.
    assert [callback.args for callback in callbacks] == [([stuck.pk],)]
    stuck_after = Enrichment.objects.get(pk=stuck.pk)
    assert stuck_after.status == Status.PENDING
    assert stuck_after.queued_at > timezone.now() - timedelta(seconds=60)
    assert (stuck_after.attempts, stuck_after.started_at, stuck_after.claim_token) == (2, None, "")
    assert credit_account_get(organization=stuck.organization).reserved == stuck.price


def test_requeue_times_out_an_enrichment_out_of_attempts(stuck: Enrichment) -> None:
    Enrichment.objects.filter(pk=stuck.pk).update(attempts=3)

    out = run_command("requeue_timed_out_enrichments", "--max-attempts", "3")

    assert out.strip() == "Re-queued 0 and timed out 1 enrichments."
    stuck.refresh_from_db()
    assert (stuck.status, stuck.error, stuck.data_found) == (Status.TIMEOUT, "timeout", False)
    account = credit_account_get(organization=stuck.organization)
    assert (account.balance, account.reserved) == (1000, 0)
    assert_ledger_invariants(stuck.organization)


def test_requeue_defaults_come_from_the_settings(stuck: Enrichment, settings: Settings) -> None:
    settings.ENRICHMENT_TIMEOUT = TIMEOUT + 120
    settings.ENRICHMENT_MAX_ATTEMPTS = 1

    assert run_json("requeue_timed_out_enrichments")["requeued"] == 0

    settings.ENRICHMENT_TIMEOUT = TIMEOUT
    Enrichment.objects.filter(pk=stuck.pk).update(attempts=1)
    assert run_json("requeue_timed_out_enrichments")["timedOutIds"] == [str(stuck.pk)]


def test_requeue_leaves_recent_and_settled_enrichments_alone(tenant: Tenant) -> None:
    person = PersonFactory(organization=tenant.organization)
    enrichments_request(
        organization=tenant.organization, user=tenant.user, person_ids=[person.pk], field="emails"
    )

    out = run_json("requeue_timed_out_enrichments", "--older-than", "60")

    assert (out["requeued"], out["timedOut"]) == (0, 0)


def test_requeue_with_max_attempts_zero_times_out_every_stuck_enrichment(
    tenant: Tenant, stuck: Enrichment
) -> None:
    # Never attempted (its job was lost before any worker took it), and one tried twice.
    tried = PersonFactory(organization=tenant.organization)
    [tried_twice] = enrichments_request(
        organization=tenant.organization, user=tenant.user, person_ids=[tried.pk], field="emails"
    ).enrichments
    Enrichment.objects.filter(pk=tried_twice.pk).update(
        attempts=2, queued_at=timezone.now() - timedelta(seconds=TIMEOUT + 60)
    )
    recent = PersonFactory(organization=tenant.organization)
    [fresh] = enrichments_request(
        organization=tenant.organization, user=tenant.user, person_ids=[recent.pk], field="emails"
    ).enrichments

    out = run_json("requeue_timed_out_enrichments", "--max-attempts", "0")

    assert (out["requeued"], out["timedOut"]) == (0, 2)
    assert sorted(out["timedOutIds"]) == sorted([str(stuck.pk), str(tried_twice.pk)])
    statuses = dict(Enrichment.objects.values_list("pk", "status"))
    assert statuses == {
        stuck.pk: Status.TIMEOUT,
        tried_twice.pk: Status.TIMEOUT,
        fresh.pk: Status.PENDING,
    }
    # Only the fresh one still holds its reservation.
    assert credit_account_get(organization=tenant.organization).reserved == fresh.price
    assert_ledger_invariants(tenant.organization)


@pytest.mark.parametrize(
    "args", [["--max-attempts", "-1"], ["--older-than", "-1"], ["--older-than", "soon"]]
)
def test_requeue_refuses_bad_input(stuck: Enrichment, args: list[str]) -> None:
    with pytest.raises(CommandError):
        run_command("requeue_timed_out_enrichments", *args)

    assert Enrichment.objects.get(pk=stuck.pk).queued_at == stuck.queued_at


def test_seed_demo_creates_a_working_demo() -> None:
    out = run_json("seed_demo", "--base-url", "http://demo.test:9000/")

    organization = Organization.objects.get(name="Demo Organization")
    assert set(out) == {"organizationId", "key", "personIds", "baseUrl", "admin"}
    assert out["organizationId"] == str(organization.pk)
    assert out["baseUrl"] == "http://demo.test:9000"
    assert credit_account_get(organization=organization).balance == 1000
    user, api_key = api_key_authenticate(raw_key=out["key"])
    assert (user.get_username(), api_key.organization) == ("demo", organization)
    persons = Person.objects.filter(organization=organization)
    assert sorted(out["personIds"]) == sorted(
        str(pk) for pk in persons.values_list("pk", flat=True)
    )
    assert len(out["personIds"]) >= 8
    domains = set(persons.values_list("company_domain", flat=True))
    magic = {sandbox.ALWAYS_FOUND, sandbox.NEVER_FOUND, sandbox.ALWAYS_TRANSIENT}
    assert magic | {sandbox.ALWAYS_PERMANENT} <= domains
    assert sandbox.TOO_SLOW not in domains
    admin = get_user_model().objects.get(username=out["admin"]["username"])
    assert admin.is_superuser and admin.is_staff
    assert admin.check_password(out["admin"]["password"])


def test_seed_demo_twice_reuses_the_demo_and_issues_a_new_key() -> None:
    first = run_json("seed_demo")
    second = run_json("seed_demo")

    assert second["organizationId"] == first["organizationId"]
    assert second["personIds"] == first["personIds"]
    assert second["key"] != first["key"]
    assert second["admin"] is None
    organization = Organization.objects.get()
    assert Person.objects.count() == len(first["personIds"])
    assert credit_account_get(organization=organization).balance == 1000
    assert credit_history(organization=organization, start=None, end=None).count() == 1
    assert ApiKey.objects.filter(organization=organization).count() == 2
    assert get_user_model().objects.filter(is_superuser=True).count() == 1


def test_seed_demo_prints_the_key_and_curl_examples_with_real_ids() -> None:
    out = run_command("seed_demo")

    key = ApiKey.objects.get()
    [printed_key] = {
        word.strip('"') for word in out.split() if word.startswith(f"ek_{key.prefix}_")
    }
    assert key.key_hash == hash_api_key(printed_key)
    assert f'-H "Authorization: Bearer {printed_key}"' in out
    for path in [
        "/api/v1/operations/credits/balance",
        "/api/v1/persons",
        "/api/v1/operations/enrichment/batch",
        "/api/v1/enrichments",
    ]:
        assert f"http://127.0.0.1:8000{path}" in out
    ids = Person.objects.values_list("pk", flat=True)
    assert all(f'"{pk}"' in out for pk in ids)
    assert "superuser 'admin'" in out


def test_seed_demo_creates_no_superuser_when_a_staff_user_exists() -> None:
    UserFactory(username="ops", is_staff=True)

    out = run_json("seed_demo")

    assert out["admin"] is None
    assert not get_user_model().objects.filter(username="admin").exists()


def test_seed_demo_refuses_a_bad_base_url() -> None:
    with pytest.raises(CommandError, match="base-url"):
        run_command("seed_demo", "--base-url", "not a url")

    assert not Organization.objects.exists()
