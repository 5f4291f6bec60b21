"""/metrics under a real gunicorn with two worker processes: whichever process answers a scrape,
it counts the requests every process served, before and after one of them dies, and samples left
by an earlier run are gone."""

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
from tests.enrichment.prometheus import INCREMENT, labels, scrape_text

pytestmark = pytest.mark.django_db(transaction=True)

HEALTHZ = ("enrichment_http_requests_total", labels(method="GET", route="healthz", status="200"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen]]:
    samples = tmp_path / "metrics"
    samples.mkdir()
    database = settings.DATABASES["default"]
    environment = os.environ | {
        MULTIPROC_DIR_VARIABLE: str(samples),
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/"
        f"{database['NAME']}",
    }
    # A process of an earlier run left samples behind.
    subprocess.run(
        [sys.executable, "-c", INCREMENT.format(amount=5)],
        env=environment,
        cwd=settings.BASE_DIR,
        check=True,
    )
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


def healthz_by_process(samples: Path) -> dict[int, float]:
    """The healthz count each process's own file holds."""
    counts = {}
    for path in samples.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                if (sample.name, tuple(sorted(sample.labels.items()))) == HEALTHZ:
                    counts[int(path.stem.rpartition("_")[2])] = sample.value
    return counts


def test_a_scrape_sums_every_gunicorn_worker_and_keeps_a_dead_ones_counts(gunicorn):
    base, samples, server = gunicorn
    sent = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        # Until both workers have served some (the kernel decides who accepts).
        while len(healthz_by_process(samples)) < 2:
            assert sent < 2000, "one worker served everything"
            list(pool.map(lambda _: urllib.request.urlopen(f"{base}/healthz").read(), range(40)))
            sent += 40

    before_death = scrape_text(urllib.request.urlopen(f"{base}/metrics").read().decode())
    assert before_death[HEALTHZ] == sent
    assert ("enrichment_created_total", labels(field="phones")) not in before_death

    victim = next(iter(healthz_by_process(samples)))
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
