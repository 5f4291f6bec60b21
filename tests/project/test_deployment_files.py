"""No Docker engine runs in CI, so the deployment files are checked as data: the compose file and
the Dockerfile must start the processes the project defines, with the settings it reads."""

import importlib.util
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command

ROOT = Path(settings.BASE_DIR)
APP_SERVICES = ("web", "worker", "webhook-worker", "beat")
# The variables a deployment must set; defaults exist only for a first local run.
DEPLOYMENT_VARIABLES = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CACHE_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
)


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        return dict(item.partition("=")[::2] for item in environment)
    return {name: str(value) for name, value in environment.items()}


def _index(instructions: list[tuple[str, str]], keyword: str, text: str) -> int:
    return next(
        i for i, (kw, arguments) in enumerate(instructions) if kw == keyword and text in arguments
    )


def test_compose_defines_the_five_services_and_rabbitmq_behind_a_profile(
    services: dict[str, dict[str, Any]],
) -> None:
    assert {"postgres", "redis", "rabbitmq", *APP_SERVICES} <= set(services)
    # `docker compose up` starts everything but RabbitMQ; its profile adds it.
    profiled = {name for name, service in services.items() if service.get("profiles")}
    assert profiled == {"rabbitmq"}
    assert services["rabbitmq"]["profiles"] == ["rabbitmq"]


def test_app_services_run_the_image_built_from_the_dockerfile(
    services: dict[str, dict[str, Any]],
) -> None:
    def builds_dockerfile(service: dict[str, Any]) -> bool:
        return (
            "build" in service and service["build"].get("dockerfile", "Dockerfile") == "Dockerfile"
        )

    built_images = {s.get("image") for s in services.values() if builds_dockerfile(s)} - {None}
    for name in APP_SERVICES:
        service = services[name]
        assert builds_dockerfile(service) or service.get("image") in built_images, name


def test_web_migrates_then_serves_the_wsgi_app_on_8000(
    services: dict[str, dict[str, Any]],
) -> None:
    web = services["web"]
    command = " ".join(_command(web))
    assert "manage.py migrate" in command
    assert command.index("manage.py migrate") < command.index("gunicorn")
    assert "enrichment_project.wsgi" in command
    assert "0.0.0.0:8000" in command
    assert any(str(port).endswith("8000") for port in web["ports"])
    assert importlib.util.find_spec("enrichment_project.wsgi") is not None


def _queues(command: list[str]) -> set[str]:
    return set(command[command.index("-Q") + 1].split(","))


def test_workers_and_beat_run_the_project_celery_app(services: dict[str, dict[str, Any]]) -> None:
    worker, beat = _command(services["worker"]), _command(services["beat"])
    webhook_worker = _command(services["webhook-worker"])
    for command in (worker, webhook_worker):
        assert command[:5] == ["celery", "-A", "enrichment_project", "worker", "--loglevel=INFO"]
    assert beat[:4] == ["celery", "-A", "enrichment_project", "beat"]
    assert "--loglevel=INFO" in beat
    assert beat[beat.index("--schedule") + 1] == "/tmp/celerybeat-schedule"


def test_enrichment_jobs_run_in_several_worker_processes(
    services: dict[str, dict[str, Any]],
) -> None:
    # A worker process runs its jobs on threads (one core for its Python): two replicas per core.
    assert settings.CELERY_WORKER_POOL == "threads"
    assert "-P" not in _command(services["worker"])
    assert services["worker"]["deploy"]["replicas"] >= 2


def test_deliveries_have_a_low_priority_worker_and_the_two_workers_consume_every_queue(
    services: dict[str, dict[str, Any]],
) -> None:
    worker, webhook_worker = _command(services["worker"]), _command(services["webhook-worker"])
    assert _queues(webhook_worker) == {settings.WEBHOOK_QUEUE}
    assert webhook_worker[webhook_worker.index("-P") + 1] == "threads"
    # Below the default CPU weight of 1024, which every other container has.
    assert services["webhook-worker"]["cpu_shares"] < 1024
    assert not any(
        "cpu_shares" in services[name] for name in set(APP_SERVICES) - {"webhook-worker"}
    )
    assert _queues(worker) | _queues(webhook_worker) == {
        queue.name for queue in settings.CELERY_TASK_QUEUES
    }
    assert not _queues(worker) & _queues(webhook_worker)


def test_app_services_wait_for_healthy_postgres_and_redis(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in APP_SERVICES:
        depends_on = services[name]["depends_on"]
        for backing in ("postgres", "redis"):
            assert depends_on[backing]["condition"] == "service_healthy", (name, backing)
        # Waited for when its profile runs it; without the profile, no dependency at all.
        assert depends_on["rabbitmq"] == {"condition": "service_healthy", "required": False}


def test_postgres_and_redis_have_healthchecks_and_postgres_a_named_volume(
    services: dict[str, dict[str, Any]],
) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name
    volume_names = {volume.split(":")[0] for volume in services["postgres"]["volumes"]}
    assert volume_names & set(compose["volumes"])


def test_rabbitmq_keeps_its_data_and_answers_the_documented_broker_url(
    services: dict[str, dict[str, Any]],
) -> None:
    compose_text = (ROOT / "docker-compose.yml").read_text()
    rabbitmq = services["rabbitmq"]
    assert rabbitmq["image"].startswith("rabbitmq:")
    assert rabbitmq["healthcheck"]["test"]
    # A node is named after its host; a fixed hostname finds its data again when re-created.
    assert rabbitmq["hostname"] == "rabbitmq"
    [volume] = rabbitmq["volumes"]
    name, _, mount = volume.partition(":")
    assert mount == "/var/lib/rabbitmq"
    assert name in yaml.safe_load(compose_text)["volumes"]
    # The URL the compose file and the README give reaches this service with its default user.
    environment = _environment(rabbitmq)
    default_password = re.fullmatch(
        r"\$\{RABBITMQ_PASSWORD:-(.+)\}", environment["RABBITMQ_DEFAULT_PASS"]
    )
    assert default_password
    url = f"amqp://{environment['RABBITMQ_DEFAULT_USER']}:{default_password[1]}@rabbitmq:5672//"
    assert f"CELERY_BROKER_URL={url}" in compose_text
    assert url in (ROOT / "README.md").read_text()


def test_app_services_set_every_deployment_variable(services: dict[str, dict[str, Any]]) -> None:
    settings_source = (ROOT / "enrichment_project" / "settings.py").read_text()
    for variable in DEPLOYMENT_VARIABLES:
        assert f'"{variable}"' in settings_source, f"settings no longer read {variable}"
    for name in APP_SERVICES:
        environment = _environment(services[name])
        assert set(DEPLOYMENT_VARIABLES) <= set(environment), name
        assert environment["DATABASE_URL"].startswith("postgres://")
        assert "@postgres:5432/" in environment["DATABASE_URL"]
        # Redis unless the deployer names another broker (RabbitMQ, with its profile).
        assert environment["CELERY_BROKER_URL"] == "${CELERY_BROKER_URL:-redis://redis:6379/0}"
        # Required from the deployer: compose refuses to start without it.
        assert environment["SECRET_KEY"].startswith("${SECRET_KEY:?")
        assert environment["DEBUG"].lower() == "false"


def test_dockerfile_installs_locked_dependencies_before_the_code(
    dockerfile: list[tuple[str, str]],
) -> None:
    assert dockerfile[0] == ("FROM", "python:3.11-slim")
    lock_copied = _index(dockerfile, "COPY", "uv.lock")
    synced = _index(dockerfile, "RUN", "uv sync")
    assert lock_copied < synced
    assert {"--frozen", "--no-dev"} <= set(dockerfile[synced][1].split())
    assert synced < _index(dockerfile, "COPY", ". .") < _index(dockerfile, "RUN", "collectstatic")


def test_dockerfile_runs_gunicorn_as_a_non_root_user(dockerfile: list[tuple[str, str]]) -> None:
    users = [arguments for keyword, arguments in dockerfile if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}
    [cmd] = [arguments for keyword, arguments in dockerfile if keyword == "CMD"]
    command = " ".join(json.loads(cmd))
    assert "gunicorn" in command
    assert "enrichment_project.wsgi" in command


def test_dockerignore_keeps_local_environments_and_secrets_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".env", ".git", "db.sqlite3*"} <= ignored


def test_collectstatic_succeeds_as_in_the_image_build() -> None:
    call_command("collectstatic", interactive=False, dry_run=True, verbosity=0)


def test_every_container_has_a_metrics_samples_directory_and_hooks_that_reset_it(
    dockerfile: list[tuple[str, str]], services: dict[str, dict[str, Any]]
) -> None:
    [env] = [arguments for keyword, arguments in dockerfile if keyword == "ENV"]
    directory = re.search(r"PROMETHEUS_MULTIPROC_DIR=(\S+)", env).group(1)
    created = _index(dockerfile, "RUN", "useradd")
    assert directory in dockerfile[created][1].split()
    hooks = (ROOT / "gunicorn.conf.py").read_text()
    assert "def on_starting" in hooks and "def child_exit" in hooks
    for name in ("worker", "webhook-worker"):
        worker = services[name]
        assert _environment(worker)["WORKER_METRICS_PORT"] in {str(p) for p in worker["expose"]}


def test_flower_watches_the_broker_the_workers_use(services: dict[str, dict[str, Any]]) -> None:
    flower = services["flower"]
    broker = _environment(services["worker"])["CELERY_BROKER_URL"]
    assert f"--broker={broker}" in flower["command"] and "flower" in flower["command"]
    assert _environment(services["worker"])["CELERY_WORKER_SEND_TASK_EVENTS"] == "true"
