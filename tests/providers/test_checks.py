"""The provider configuration as `manage.py check` and worker start-up see it."""

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from providers import registry
from providers.adapters.hunter import HunterAdapter
from providers.base import Answer, Subject, SyncAdapter
from providers.checks import configuration_problems, refuse_misconfigured_worker


class ClearbitAdapter(SyncAdapter):
    """A custom adapter, configured by dotted path."""

    name = "clearbit"
    fields = frozenset({"emails"})
    key_header = "Authorization"

    def lookup(self, subject: Subject, field: str) -> Answer:
        return Answer()


CUSTOM = "tests.providers.test_checks.ClearbitAdapter"


def _ids(providers: dict) -> list[str]:
    with override_settings(ENRICHMENT_PROVIDERS=providers):
        return [problem.id for problem in configuration_problems()]


def test_the_default_configuration_has_no_problem() -> None:
    assert configuration_problems() == []


def test_names_and_dotted_paths_both_resolve() -> None:
    assert registry.adapter_class("hunter") is HunterAdapter
    assert registry.adapter_class("providers.adapters.hunter.HunterAdapter") is HunterAdapter
    assert registry.adapter_class(CUSTOM) is ClearbitAdapter
    with pytest.raises(LookupError):
        registry.adapter_class("clearbit")


def test_a_dotted_path_to_something_else_than_an_adapter_is_an_error() -> None:
    assert _ids({"emails": ["providers.base.Subject"], "phones": ["sandbox"]}) == ["providers.E002"]


def test_a_configured_provider_without_its_key_is_an_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HUNTER_API_KEY", raising=False)

    with override_settings(ENRICHMENT_PROVIDERS={"emails": ["hunter"], "phones": ["sandbox"]}):
        (problem,) = configuration_problems()

    assert problem.id == "providers.E004"
    assert "HUNTER_API_KEY is not set" in problem.msg


def test_with_its_key_the_provider_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUNTER_API_KEY", "hk-test-0123456789")
    monkeypatch.setenv("CLEARBIT_API_KEY", "hk-test-0123456789")

    assert _ids({"emails": ["hunter", CUSTOM], "phones": ["sandbox"]}) == []


def test_a_custom_adapter_needs_its_key_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLEARBIT_API_KEY", raising=False)

    assert _ids({"emails": [CUSTOM], "phones": ["sandbox"]}) == ["providers.E004"]


@pytest.mark.parametrize(
    ("providers", "expected"),
    [
        ({"emails": ["nosuch"], "phones": ["sandbox"]}, ["providers.E002"]),
        ({"emails": ["no.such.Adapter"], "phones": ["sandbox"]}, ["providers.E002"]),
        ({"emails": ["sandbox"], "phones": ["sandbox"], "faxes": ["sandbox"]}, ["providers.E001"]),
        ({"emails": "sandbox"}, ["providers.E001"]),
        ({"emails": ["sandbox"]}, ["providers.W001"]),
    ],
)
def test_malformed_configuration_is_reported(providers: dict, expected: list[str]) -> None:
    assert _ids(providers) == expected


def test_a_provider_asked_for_a_field_it_cannot_find_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HUNTER_API_KEY", "hk-test-0123456789")

    assert _ids({"emails": ["sandbox"], "phones": ["hunter"]}) == ["providers.E003"]


@pytest.mark.parametrize(
    ("variable", "value"), [("HUNTER_RATE_LIMIT", "fast"), ("HUNTER_TIMEOUT", "-1")]
)
def test_a_malformed_rate_limit_or_timeout_is_an_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv("HUNTER_API_KEY", "hk-test-0123456789")
    monkeypatch.setenv(variable, value)

    with override_settings(ENRICHMENT_PROVIDERS={"emails": ["hunter"], "phones": ["sandbox"]}):
        (problem,) = configuration_problems()

    assert problem.id == "providers.E005"
    assert variable in problem.msg


@override_settings(ENRICHMENT_MIN_QUALITY={"emails": "excellent"})
def test_an_unknown_minimum_quality_is_an_error() -> None:
    assert [p.id for p in configuration_problems()] == ["providers.E006"]


def test_manage_py_check_fails_naming_the_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PDL_API_KEY", raising=False)

    with (
        override_settings(ENRICHMENT_PROVIDERS={"emails": ["pdl"], "phones": ["pdl"]}),
        pytest.raises(SystemCheckError, match="PDL_API_KEY"),
    ):
        call_command("check")


def test_worker_start_up_hook_refuses_a_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LUSHA_API_KEY", raising=False)

    with (
        override_settings(ENRICHMENT_PROVIDERS={"emails": ["lusha"], "phones": ["lusha"]}),
        pytest.raises(SystemExit, match="LUSHA_API_KEY"),
    ):
        refuse_misconfigured_worker()


def test_a_real_worker_does_not_start_without_the_key() -> None:
    env = {key: value for key, value in os.environ.items() if not key.endswith("_API_KEY")} | {
        "DJANGO_SETTINGS_MODULE": "enrichment_project.settings",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "ENRICHMENT_PROVIDERS": '{"emails": ["hunter"], "phones": ["sandbox"]}',
    }

    worker = subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "enrichment_project",
            "worker",
            "--pool=solo",
            "--loglevel=WARNING",
        ],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert worker.returncode != 0
    assert "HUNTER_API_KEY is not set" in worker.stderr + worker.stdout
