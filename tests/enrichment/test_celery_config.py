"""A typo in a Celery setting silently disables it; these read the configuration the worker gets."""

import json

import pytest
from django.conf import settings

from enrichment_project.celery import app
from tests.processes import python_run

pytestmark = pytest.mark.broker

REDIS = app.conf.broker_url.startswith(("redis://", "rediss://"))
AMQP = app.conf.broker_url.startswith(("amqp://", "amqps://", "pyamqp://"))
# RabbitMQ's default consumer_timeout (rabbitmq.conf, 1,800,000 ms): a channel holding a delivery
# unacknowledged longer is closed and its deliveries re-queued.
RABBITMQ_CONSUMER_TIMEOUT = 1800


def test_tasks_are_acknowledged_late_and_rejected_when_their_worker_dies():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    # Jobs run on threads, which cannot be cancelled: a running job finishes, and its message,
    # re-delivered meanwhile, finds its enrichments settled or held by the live job.
    assert app.conf.worker_cancel_long_running_tasks_on_connection_loss is False


def test_a_worker_process_runs_many_jobs_each_with_every_lookup_in_flight():
    assert app.conf.worker_pool == "threads"
    assert app.conf.worker_concurrency > 1
    # No job of a process waits for a lookup thread another job holds.
    jobs_lookups = app.conf.worker_concurrency * settings.ENRICHMENT_TASK_CHUNK_SIZE
    assert jobs_lookups <= settings.ENRICHMENT_PROVIDER_CONCURRENCY


def _longest_unacknowledged_hold() -> float:
    """How long a worker can hold a job's message unacknowledged: a retry is published with a
    countdown the worker waits out holding the message, then the job runs up to its hard limit."""
    return settings.ENRICHMENT_RETRY_BACKOFF_MAX_SECONDS + app.conf.task_time_limit


def test_time_limits_are_ordered_and_the_hard_one_is_the_claim_lease():
    soft, hard = app.conf.task_soft_time_limit, app.conf.task_time_limit
    assert 0 < soft < hard
    # The claim lease is the hard limit: a claim older than that belongs to a dead job.
    assert hard == settings.CELERY_TASK_TIME_LIMIT


@pytest.mark.skipif(not REDIS, reason="the visibility timeout is Redis's")
def test_no_job_outlives_the_redis_visibility_timeout():
    visibility = app.conf.broker_transport_options["visibility_timeout"]
    assert _longest_unacknowledged_hold() < visibility


def broker_connection_of(url: str) -> dict[str, str]:
    """The transport and TLS options of the Celery connection a process configured with
    CELERY_BROKER_URL=`url` makes."""
    script = (
        "import json, django; django.setup()\n"
        "from enrichment_project.celery import app\n"
        "connection = app.connection_for_write()\n"
        "print(json.dumps({'transport': connection.transport_cls, 'ssl': repr(connection.ssl)}))"
    )
    return json.loads(python_run(script, CELERY_BROKER_URL=url).stdout)


def test_a_redis_broker_is_reached_through_the_transport_that_survives_its_loss():
    assert broker_connection_of("redis://127.0.0.1:6379/0") == {
        "transport": "enrichment_project.broker:RedisTransport",
        "ssl": "False",
    }


def test_a_rediss_broker_checks_the_certificate_unless_its_url_says_otherwise():
    assert broker_connection_of("rediss://redis.example:6380/0") == {
        "transport": "enrichment_project.broker:RedisTransport",
        "ssl": "{'ssl_cert_reqs': <VerifyMode.CERT_REQUIRED: 2>}",
    }
    assert broker_connection_of("rediss://redis.example:6380/0?ssl_cert_reqs=none")["ssl"] == (
        "{'ssl_cert_reqs': <VerifyMode.CERT_NONE: 0>}"
    )


@pytest.mark.skipif(not AMQP, reason="publisher confirms and consumer_timeout are RabbitMQ's")
def test_rabbitmq_publishes_are_confirmed_and_no_job_outlives_its_consumer_timeout():
    assert app.conf.broker_transport_options == {"confirm_publish": True}
    assert _longest_unacknowledged_hold() < RABBITMQ_CONSUMER_TIMEOUT


def test_no_result_backend_is_used():
    assert app.conf.result_backend is None
    assert app.conf.task_ignore_result is True


def test_a_plain_worker_consumes_every_queue_the_project_uses():
    consumed = {queue.name for queue in app.conf.task_queues}
    assert consumed == {
        app.conf.task_default_queue,
        settings.ENRICHMENT_QUEUE,
        settings.WEBHOOK_QUEUE,
    }


def test_tasks_have_explicit_names():
    app.loader.import_default_modules()
    project_tasks = {name for name in app.tasks if not name.startswith("celery.")}
    assert project_tasks == {
        "enrichment.process_enrichments",
        "enrichment.requeue_timed_out_enrichments",
        "enrichment.poll_async_lookups",
        "organizations.purge_expired_idempotency_keys",
        "webhooks.deliver",
        "webhooks.sweep_due_deliveries",
    }


def test_beat_runs_the_requeue_service_every_minute():
    entry = app.conf.beat_schedule["requeue-timed-out-enrichments"]
    assert entry["task"] == "enrichment.requeue_timed_out_enrichments"
    assert entry["schedule"] == 60


def test_beat_sweeps_due_webhook_deliveries_every_few_seconds():
    entry = app.conf.beat_schedule["sweep-due-webhook-deliveries"]
    assert entry["task"] == "webhooks.sweep_due_deliveries"
    assert entry["schedule"] == settings.WEBHOOK_SWEEP_SECONDS == 5


def test_beat_polls_async_submissions_every_30_seconds():
    entry = app.conf.beat_schedule["poll-async-lookups"]
    assert entry["task"] == "enrichment.poll_async_lookups"
    assert entry["schedule"] == settings.ENRICHMENT_ASYNC_POLL_SECONDS == 30
    assert settings.ENRICHMENT_ASYNC_MAX_WAIT == 1800
