"""Shared machinery of the fault-injection tests: a private broker (Redis or RabbitMQ, the kind
the run's CELERY_BROKER_URL names), real worker and gunicorn processes against the pytest
database, and bounded waits. Every process started here runs in a process group of its own and
is killed, with the whole group, in the fixture's teardown.

Other people use the shared Redis on 6379 and RabbitMQ on 5672 at the same time: these tests
never touch them, every process here (this one included) talks to the private one."""

import contextlib
import math
import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from urllib.parse import quote, urlsplit

import kombu
import kombu.exceptions
import kombu.pools
import pytest
import redis
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count
from django.utils import timezone
from pytest_django import Settings

from credits.models import CreditTransaction
from enrichment.models import Enrichment, Status
from enrichment.services import enrichments_requeue_timed_out
from enrichment_project.celery import app
from organizations.models import Organization
from persons.models import Person
from tests.conftest import Tenant
from tests.enrichment.conftest import request_enrichments as request_enrichments_of
from tests.factories import PersonFactory

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"

# What this process and every subprocess agree on. The claim lease is CELERY_TASK_TIME_LIMIT:
# short, so the re-queue service takes back within seconds the jobs a fault lost. Small job
# chunks make many jobs, so a fault always lands on some in flight.
SHARED_SETTINGS: dict[str, int | float | str] = {
    "CELERY_TASK_TIME_LIMIT": 8,
    "CELERY_TASK_SOFT_TIME_LIMIT": 6,
    "CELERY_WORKER_CONCURRENCY": 4,
    "ENRICHMENT_TASK_CHUNK_SIZE": 5,
    "ENRICHMENT_MAX_ATTEMPTS": 5,
    "ENRICHMENT_RETRY_BACKOFF_SECONDS": 0.1,
    "ENRICHMENT_RETRY_BACKOFF_MAX_SECONDS": 0.5,
    "API_RATE_LIMIT": "1000000/min",
}
# The re-queue service's `older_than` while waiting: jobs still queued behind others get a
# harmless duplicate, jobs the broker lost come back within seconds.
REQUEUE_OLDER_THAN = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def poll_until(condition: Callable[[], object], *, timeout: float) -> bool:
    """Polls `condition` until it is true (True) or `timeout` seconds have passed (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait_until(condition: Callable[[], object], *, timeout: float, what: str) -> float:
    """Polls `condition` until it is true; the seconds it took, or a failure after `timeout`."""
    start = time.monotonic()
    if not poll_until(condition, timeout=timeout):
        raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
    return time.monotonic() - start


# --- Processes --------------------------------------------------------------------------------


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    log: Path
    killed: bool = False

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole process group, whatever the worker started. Once
        only: after that the group id is free, and another process may come to hold it."""
        if self.killed:
            return
        with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        self.killed = True


Spawn = Callable[[str, Sequence[str], dict[str, str]], Process]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Starts a subprocess in a new session (so its group can be killed); its output goes to
    `<name>-<n>.log` in tmp_path."""
    started: list[Process] = []

    def start(name: str, args: Sequence[str], env: dict[str, str]) -> Process:
        log = tmp_path / f"{name}-{len(started)}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                args,
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(Process(popen=popen, log=log))
        return started[-1]

    yield start
    for process in reversed(started):
        process.kill()


# --- Private brokers ---------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of our own on a free port, without persistence: stopping it loses every
    queued and unacknowledged job, which is the worst a broker crash can do."""

    name = "Redis"
    crash = "queue lost"

    def __init__(self, spawn: Spawn) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._spawn = spawn
        self._process: Process | None = None

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        self._process = self._spawn("redis", args, dict(os.environ))
        wait_until(self.answers, timeout=10, what=f"redis-server on port {self.port}")

    def stop(self) -> None:
        assert self._process is not None
        self._process.kill()

    def answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.ConnectionError:
            return False


class PrivateRabbitMQ:
    """A RabbitMQ node of our own: its own node name, AMQP and distribution ports, configuration
    and data directory, so nothing here touches the shared node on 5672. Stopped with SIGKILL, a
    crash; started again on the same data directory, as a crashed node restarts from its disk:
    durable queues and the persistent jobs it had written come back, the rest are lost.

    A node takes seconds to boot, so one serves the whole session; each test starts with the
    project's queues purged."""

    name = "RabbitMQ"
    crash = "unwritten jobs lost"

    def __init__(self, directory: Path) -> None:
        self.port, dist_port = free_port(), free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self._directory = directory
        (directory / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (directory / "rabbitmq-env.conf").write_text("")  # not the system's (its node name, port)
        (directory / "enabled_plugins").write_text("[].\n")  # no management listener
        self._env = {
            **os.environ,
            "HOME": str(directory),  # where the node keeps its Erlang cookie
            "RABBITMQ_NODENAME": f"faults-{uuid.uuid4().hex[:8]}@localhost",
            "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_PID_FILE": str(directory / "node.pid"),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        self._process: Process | None = None
        self._starts = 0

    def start(self) -> None:
        log = self._directory / f"node-{self._starts}.log"
        self._starts += 1
        with log.open("wb") as out:
            popen = subprocess.Popen(
                ["/usr/lib/rabbitmq/bin/rabbitmq-server"],
                env=self._env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._process = Process(popen=popen, log=log)
        wait_until(self.answers, timeout=60, what=f"RabbitMQ on port {self.port} (its log: {log})")

    def stop(self) -> None:
        assert self._process is not None
        self._process.kill()

    def answers(self) -> bool:
        try:
            with kombu.Connection(self.url, connect_timeout=1) as connection:
                connection.ensure_connection(max_retries=1)
            return True
        except (OSError, kombu.exceptions.OperationalError):
            return False

    def purge_project_queues(self) -> None:
        with kombu.Connection(self.url) as connection:
            for queue in app.amqp.queues.values():
                bound = queue(connection.default_channel)
                bound.declare()
                bound.purge()


PrivateBroker = PrivateRedis | PrivateRabbitMQ
# The pytest run's broker (`make test` runs the fault suite once on each) says which kind.
ON_RABBITMQ = urlsplit(django_settings.CELERY_BROKER_URL).scheme in {"amqp", "amqps", "pyamqp"}


@pytest.fixture(scope="session")
def rabbitmq_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbitMQ]:
    node = PrivateRabbitMQ(tmp_path_factory.mktemp("rabbitmq"))
    node.start()
    yield node
    node.stop()


def use_broker(url: str) -> None:
    """Points this process's Celery app at `url` (the read and write URLs were filled in from the
    broker URL when the app was configured). Its connection pools were made for the old URL, so
    they are closed and dropped, from kombu's registry too: it keeps pools by URL, and would hand
    a closed one back when a test comes back to a URL (the session's RabbitMQ node). The next
    publish builds new ones."""
    app.conf.broker_url = app.conf.broker_read_url = app.conf.broker_write_url = url
    kombu.pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def private_broker(
    request: pytest.FixtureRequest, spawn: Spawn, settings: Settings
) -> Iterator[PrivateBroker]:
    """A broker of the run's kind that only this test uses (and may stop)."""
    server: PrivateBroker
    if ON_RABBITMQ:
        server = request.getfixturevalue("rabbitmq_node")
        if not server.answers():  # an earlier test failed while it was stopped
            server.start()
        server.purge_project_queues()
    else:
        server = PrivateRedis(spawn)
        server.start()
    shared_url = app.conf.broker_url
    settings.CELERY_BROKER_URL = server.url
    use_broker(server.url)
    yield server
    use_broker(shared_url)


# --- The stack under test ---------------------------------------------------------------------


@pytest.fixture
def subprocess_env(
    transactional_db: None, private_broker: PrivateBroker, settings: Settings
) -> dict[str, str]:
    """The environment of workers and gunicorn: the pytest database (committed rows, hence
    transactional_db, which also flushes only after the processes are killed), the private
    broker, and SHARED_SETTINGS, which this process takes too."""
    for name, value in SHARED_SETTINGS.items():
        setattr(settings, name, value)
    db = settings.DATABASES["default"]
    credentials = quote(db["USER"]) + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    database_url = f"postgres://{credentials}@{db['HOST']}:{db['PORT']}/{quote(db['NAME'])}"
    return {
        **os.environ,
        **{name: str(value) for name, value in SHARED_SETTINGS.items()},
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": private_broker.url,
        "PYTHONUNBUFFERED": "1",
    }


StartWorker = Callable[..., Process]


@pytest.fixture
def start_worker(spawn: Spawn, subprocess_env: dict[str, str]) -> StartWorker:
    """`start_worker(ENRICHMENT_SANDBOX_LATENCY_MS=200, ...)`: a real worker, exactly as
    deployed (`celery -A enrichment_project worker`), with extra settings in its environment;
    returned once it consumes."""

    def start(**env: object) -> Process:
        args = [str(VENV_BIN / "celery"), "-A", "enrichment_project", "worker"]
        # Mingle and gossip only slow the start down: there is no other worker to talk to.
        args += ["--loglevel=INFO", "--without-mingle", "--without-gossip"]
        args += [f"--hostname=faults-{uuid.uuid4().hex[:8]}@%h"]
        worker = spawn("worker", args, subprocess_env | {k: str(v) for k, v in env.items()})
        wait_until(
            lambda: b" ready." in worker.log.read_bytes(),
            timeout=60,
            what=f"the worker to be ready (its log: {worker.log})",
        )
        return worker

    return start


@pytest.fixture
def gunicorn(spawn: Spawn, subprocess_env: dict[str, str]) -> str:
    """The API served by gunicorn with four processes; its base URL once it answers."""
    port = free_port()
    # --preload: the app is imported once and forked, not four times over on two cores.
    args = [str(VENV_BIN / "gunicorn"), "enrichment_project.wsgi", "-w", "4", "--preload"]
    spawn("gunicorn", [*args, "-b", f"127.0.0.1:{port}"], subprocess_env)
    base_url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    wait_until(answers, timeout=30, what="gunicorn to answer /healthz")
    return base_url


# --- Data and outcomes ------------------------------------------------------------------------


def add_persons(tenant: Tenant, count: int, **fields: str) -> list[Person]:
    """Persons in one INSERT; by default the sandbox finds three in four of them."""
    persons = PersonFactory.build_batch(count, organization=tenant.organization, **fields)
    return Person.objects.bulk_create(persons)


def request_enrichments(
    tenant: Tenant, persons: Sequence[Person], field: str = "emails"
) -> list[uuid.UUID]:
    """Requests the enrichments the way the API does; the jobs are published on commit."""
    return [enrichment.pk for enrichment in request_enrichments_of(tenant, persons, field)]


def jobs_for(enrichments: int) -> int:
    """How many jobs publishing that many enrichments makes."""
    return math.ceil(enrichments / django_settings.ENRICHMENT_TASK_CHUNK_SIZE)


def wait_for_work_in_flight(organization: Organization, claims: int = 4) -> None:
    """Waits until jobs have claimed `claims` enrichments from now on and not settled them yet:
    a fault injected then hits work in flight."""
    now = timezone.now()
    in_flight = Enrichment.objects.filter(
        organization=organization, status=Status.PENDING, started_at__gte=now
    )
    wait_until(lambda: in_flight.count() >= claims, timeout=30, what="a worker to claim work")


class RequeueService:
    """The re-queue service as beat runs it, but once a second and with a short `older_than`,
    for the jobs a fault took from the broker; it takes a claimed row back once its lease has
    run out."""

    def __init__(self) -> None:
        self.requeued = self.timed_out = 0
        self._next_run = time.monotonic()

    def run_due(self) -> None:
        if time.monotonic() < self._next_run:
            return
        report = enrichments_requeue_timed_out(
            older_than=REQUEUE_OLDER_THAN, max_attempts=django_settings.ENRICHMENT_MAX_ATTEMPTS
        )
        self.requeued += len(report.requeued)
        self.timed_out += len(report.timed_out)
        self._next_run = time.monotonic() + 1


@dataclass(frozen=True)
class Settled:
    seconds: float
    requeued: int
    timed_out: int


def wait_until_settled(
    organization: Organization, *, timeout: float = 60, requeue: bool = False
) -> Settled:
    """Waits until no enrichment of the organization is pending. With `requeue`, runs the
    re-queue service meanwhile (RequeueService)."""
    pending = Enrichment.objects.filter(organization=organization, status=Status.PENDING)
    service = RequeueService()

    def settled() -> bool:
        if requeue:
            service.run_due()
        return not pending.exists()

    try:
        seconds = wait_until(settled, timeout=timeout, what="every enrichment to settle")
    except AssertionError as error:
        raise AssertionError(f"{error}; statuses: {final_states(organization)}") from None
    return Settled(seconds=seconds, requeued=service.requeued, timed_out=service.timed_out)


def final_states(organization: Organization) -> dict[str, int]:
    rows = Enrichment.objects.filter(organization=organization).values_list("status", flat=True)
    return dict(Counter(rows))


def double_charges() -> int:
    """Enrichments with more than one charge on the ledger (the database refuses them)."""
    return (
        CreditTransaction.objects.filter(kind=CreditTransaction.Kind.CHARGE)
        .values("reference_id")
        .annotate(charges=Count("pk"))
        .filter(charges__gt=1)
        .count()
    )


def assert_settled_and_charged_once(organization: Organization) -> dict[str, int]:
    """Nothing pending, nothing charged twice, and `check_ledger` passes; the final states."""
    states = final_states(organization)
    assert Status.PENDING not in states, states
    assert double_charges() == 0
    assert_ledger_checks_out()
    return states


def assert_ledger_checks_out() -> None:
    """`manage.py check_ledger` over every organization; on failure its report is the message."""
    out = StringIO()
    try:
        call_command("check_ledger", stdout=out)
    except CommandError as error:
        pytest.fail(f"{error}\n{out.getvalue()}")


def report(scenario: str, **figures: object) -> None:
    """One line of figures per scenario (shown with `pytest -s`)."""
    print(f"\n[faults] {scenario}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
