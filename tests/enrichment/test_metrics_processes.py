"""Metrics in multi-process mode, with real servers: gunicorn with two worker processes behind
/metrics, and a prefork Celery worker behind its exporter (WORKER_METRICS_PORT). Whichever process
answers a scrape, it sums what every process did."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings
from prometheus_client.multiprocess import MultiProcessCollector

from enrichment_project.metrics import MULTIPROC_DIR_VARIABLE
from tests.enrichment.conftest import request_enrichments, wait_until_settled
from tests.enrichment.prometheus import INCREMENT, labels, scrape_text
from tests.factories import PersonFactory
from tests.processes import python_run

pytestmark = pytest.mark.django_db(transaction=True)

HEALTHZ = ("enrichment_http_requests_total", labels(method="GET", route="healthz", status="200"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def database_url_of_tests() -> str:
    """The pytest database, for the servers started here: they see the rows tests commit."""
    database = settings.DATABASES["default"]
    return f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen]]:
    samples = tmp_path / "metrics"
    samples.mkdir()
    environment = os.environ | {
        MULTIPROC_DIR_VARIABLE: str(samples),
        "DATABASE_URL": database_url_of_tests(),
    }
    # A process of an earlier run left samples behind.
    python_run(INCREMENT.format(amount=5), **environment)
    port = free_port()
    command = [Path(sys.executable).parent / "gunicorn", "enrichment_project.wsgi:application"]
    command += ["--config", "gunicorn.conf.py", "--workers", "2", "--bind", f"127.0.0.1:{port}"]
    server = subprocess.Popen(
        command,
        env=environment,
        cwd=settings.BASE_DIR,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "gunicorn.log").open("wb"),
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{base}/readyz", timeout=2)
            break
        except OSError:
            assert time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
            time.sleep(0.1)
    yield base, samples, server
    os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=10)


def test_a_scrape_sums_every_gunicorn_worker_and_keeps_a_dead_ones_counts(gunicorn):
    base, samples, server = gunicorn
    sent = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        # Until both workers have served some (the kernel decides who accepts).
        while len(samples_with(samples, HEALTHZ)) < 2:
            assert sent < 2000, "one worker served everything"
            list(pool.map(lambda _: urllib.request.urlopen(f"{base}/healthz").read(), range(40)))
            sent += 40

    before_death = scrape_text(urllib.request.urlopen(f"{base}/metrics").read().decode())
    assert before_death[HEALTHZ] == sent
    assert ("enrichment_created_total", labels(field="phones")) not in before_death

    victim = next(iter(samples_with(samples, HEALTHZ)))
    os.kill(victim, signal.SIGKILL)  # gunicorn's master reaps it (child_exit) and forks another
    deadline = time.monotonic() + 30
    while True:
        try:
            after_death = scrape_text(urllib.request.urlopen(f"{base}/metrics").read().decode())
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert after_death[HEALTHZ] == sent
    assert server.poll() is None


@pytest.fixture
def prefork_worker(tmp_path: Path, enrichment_queue) -> Iterator[tuple[str, Path]]:
    """`celery worker` with two prefork children against the test database and broker; its
    exporter's URL and its samples directory."""
    samples = tmp_path / "worker-metrics"
    samples.mkdir()
    port = free_port()
    environment = os.environ | {
        MULTIPROC_DIR_VARIABLE: str(samples),
        "WORKER_METRICS_PORT": str(port),
        "DATABASE_URL": database_url_of_tests(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        # Celery reads `--pool prefork` as its default and keeps the configured threads pool.
        "CELERY_WORKER_POOL": "prefork",
        # Each job takes a while, so both children get some of them (prefetch is 1).
        "ENRICHMENT_SANDBOX_LATENCY_MS": "200",
    }
    command = [Path(sys.executable).parent / "celery", "-A", "enrichment_project", "worker"]
    command += ["--pool", "prefork", "--concurrency", "2", "--loglevel", "INFO"]
    worker = subprocess.Popen(
        command,
        env=environment,
        cwd=settings.BASE_DIR,
        stdout=subprocess.DEVNULL,
        stderr=(log := tmp_path / "worker.log").open("wb"),
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while b" ready." not in log.read_bytes():
        assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/metrics", samples
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)


def test_the_worker_exporter_sums_its_prefork_children(make_tenant, prefork_worker, settings):
    url, samples = prefork_worker
    settings.ENRICHMENT_TASK_CHUNK_SIZE = 1  # one job per enrichment, spread over the children
    tenant = make_tenant(credits=100)
    domains = ["found.example"] * 4 + ["notfound.example"] * 2
    people = [PersonFactory(organization=tenant.organization, company_domain=d) for d in domains]

    request_enrichments(tenant, people)
    wait_until_settled(tenant.organization)
    ended = ("enrichment_ended_total", labels(field="emails", status="finished"))
    deadline = time.monotonic() + 10
    while (scraped := scrape_text(urllib.request.urlopen(url).read().decode())).get(ended) != 6:
        assert time.monotonic() < deadline, scraped.get(ended)
        time.sleep(0.1)

    assert scraped[("enrichment_credits_charged_total", ())] == 4
    assert scraped[("enrichment_credits_released_total", ())] == 2
    found = ("enrichment_provider_requests_total", labels(outcome="found", provider="sandbox"))
    missed = ("enrichment_provider_requests_total", labels(outcome="not_found", provider="sandbox"))
    assert (scraped[found], scraped[missed]) == (4, 2)
    assert len(samples_with(samples, ended)) == 2  # both children settled some


def samples_with(samples: Path, key: tuple) -> dict[int, float]:
    """The value of one sample in each process's own file that has it, by process id."""
    values = {}
    for path in samples.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                if (sample.name, labels(**sample.labels)) == key:
                    values[int(path.stem.rpartition("_")[2])] = sample.value
    return values
