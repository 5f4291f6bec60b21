"""gunicorn and Celery workers as child processes of the bench, always stopped on the way out."""

import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from bench.environment import BENCH_ENV, ROOT, VENV_BIN
from bench.fake_provider import FakeHunterClient
from bench.receiver import RECEIVER_NICE, ReceiverClient
from enrichment_project.celery import app

LOG_DIR = Path(tempfile.mkdtemp(prefix="enrichment-bench-"))
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


@contextmanager
def _child(
    name: str,
    args: list[str],
    extra_env: dict[str, str],
    ready: Callable[[], bool],
    nice: int = 0,
) -> Iterator[None]:
    """`nice` lowers the child's CPU priority below the bench's other processes."""
    log = LOG_DIR / f"{name}.log"
    with log.open("ab") as out:
        # A process group of its own, so the whole tree (prefork children too) is stopped by its
        # id. Not a session: with the kernel's autogroup scheduling each session shares the CPU
        # as one unit whatever its processes' nice values, which would cancel `nice`.
        process = subprocess.Popen(
            ["nice", "-n", str(nice), *args] if nice else args,
            cwd=ROOT,
            env=os.environ | BENCH_ENV | extra_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; see {log}")
            time.sleep(0.2)
        yield
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # Prefork children left behind by a killed parent still belong to the group.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def gunicorn(port: int, workers: int) -> Iterator[None]:
    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as reply:
                return reply.status == 200
        except OSError:
            return False

    args = [str(VENV_BIN / "gunicorn"), "enrichment_project.wsgi"]
    args += ["-w", str(workers), "-b", f"127.0.0.1:{port}"]
    with _child("gunicorn", args, {}, healthy):
        yield


@contextmanager
def celery_worker(
    name: str,
    extra_env: dict[str, str],
    include: str = "",
    options: Sequence[str] = (),
    nice: int = 0,
) -> Iterator[None]:
    """A worker started as in production (`celery -A enrichment_project worker`), with the
    project's pool and concurrency unless `options` (e.g. `-Q`, `-P`, `-c`) say otherwise;
    `include` adds a module of bench-only tasks."""
    hostname = f"{name}@bench"
    args = [str(VENV_BIN / "celery"), "-A", "enrichment_project", "worker", "-n", hostname]
    if include:
        args += ["-I", include]
    args += options

    def answers() -> bool:
        return bool(app.control.ping(destination=[hostname], timeout=0.5))

    with _child(f"worker-{name}", args, extra_env, answers, nice):
        yield


@contextmanager
def local_receiver() -> Iterator[ReceiverClient]:
    """Section e's webhook receiver (bench/receiver.py) at the lowest CPU priority; yields a
    client for its URL and counts."""
    client = ReceiverClient(free_port())
    args = [str(VENV_BIN / "python"), "-m", "bench.receiver", str(client.port)]
    with _child("receiver", args, {}, client.answers, nice=RECEIVER_NICE):
        yield client


@contextmanager
def fake_hunter_process(*, latency_ms: int, limit: int, api_key: str) -> Iterator[FakeHunterClient]:
    """Section f's provider (bench/fake_provider.py) as a process of its own, at normal priority
    as a provider's servers would be; yields a client for its URL and counts."""
    client = FakeHunterClient(free_port())
    args = [str(VENV_BIN / "python"), "-m", "bench.fake_provider", str(client.port)]
    args += [str(latency_ms), str(limit), api_key]
    with _child("fake-hunter", args, {}, client.answers):
        yield client
