import gc
import logging.config
import os
import sys
from contextvars import Token
from typing import Any

from celery import Celery, Task, signals
from django.conf import settings

from enrichment_project.log_context import (
    PROPAGATED,
    log_context,
    log_context_bind,
    log_context_reset,
)
from enrichment_project.metrics import (
    metrics_dir_reset,
    metrics_exporter_start,
    metrics_process_dead,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "enrichment_project.settings")

app = Celery("enrichment_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# --- Logs: the request id travels with the job ----------------------------------------------
@signals.before_task_publish.connect
def _propagate_log_context(headers: dict[str, Any], **kwargs: Any) -> None:
    context = log_context()
    headers.update({key: context[key] for key in PROPAGATED if key in context})


_task_contexts: dict[str, Token[dict[str, str]]] = {}


@signals.task_prerun.connect
def _bind_task_log_context(task_id: str, task: Task, **kwargs: Any) -> None:
    carried = {key: getattr(task.request, key, None) for key in PROPAGATED}
    _task_contexts[task_id] = log_context_bind(task_id=task_id, **carried)


@signals.task_postrun.connect
def _unbind_task_log_context(task_id: str, **kwargs: Any) -> None:
    token = _task_contexts.pop(task_id, None)
    if token is not None:
        log_context_reset(token)


@signals.setup_logging.connect
def _setup_logging(**kwargs: Any) -> None:
    """The worker logs through the project's LOGGING (JSON lines with LOG_FORMAT=json) instead
    of the handlers Celery would install."""
    logging.config.dictConfig(settings.LOGGING)


# --- Metrics: one samples directory per worker, served by the main process -------------------
@signals.worker_init.connect
def _start_metrics(**kwargs: Any) -> None:
    metrics_dir_reset()
    if settings.WORKER_METRICS_PORT:
        metrics_exporter_start(port=settings.WORKER_METRICS_PORT, token=settings.METRICS_TOKEN)


@signals.worker_process_shutdown.connect
def _forget_process_metrics(pid: int, **kwargs: Any) -> None:
    metrics_process_dead(pid)


# --- The interpreter's thread switching -----------------------------------------------------
@signals.worker_init.connect
def _set_switch_interval(**kwargs: Any) -> None:
    """Measured on the sandbox's 1,000 ms drain of 10,000 enrichments for 20 organizations: at
    Python's 5 ms, 35-43 voluntary context switches and 1.84-1.90 ms of worker CPU per
    enrichment (0.5 ms of it in the kernel), 689-715 enrichments/s; at 20 ms, 5.5-6.8 switches,
    0.99-1.22 ms, 959-1,114/s. Set before the pool starts; a prefork child inherits it."""
    sys.setswitchinterval(settings.WORKER_SWITCH_INTERVAL)


# --- Garbage collection: the start-up heap is out of the collector's reach ------------------
@signals.worker_ready.connect
@signals.worker_process_init.connect
def _freeze_startup_heap(**kwargs: Any) -> None:
    """What a worker imported and built to start (Django, Celery, the apps, the providers'
    clients) lives as long as the process. Frozen, it is no longer scanned by every full
    collection, which otherwise stops all of the process's threads for as long as it takes: in
    the limited HTTP drain, 170-255 ms, and lookups waiting for their rate-limit slot were sent
    that late. `worker_ready` for a thread or solo pool's only process (after its start-up),
    `worker_process_init` for a prefork child."""
    gc.collect()
    gc.freeze()
