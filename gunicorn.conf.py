"""gunicorn reads this file from the working directory (the image's /app, the repository).

Metrics in multi-process mode: samples of a previous run are dropped before the workers start,
and an exited worker's live gauges with it (its counters stay in the sums)."""

from typing import Any

from enrichment_project.metrics import metrics_dir_reset, metrics_process_dead


def on_starting(server: Any) -> None:
    metrics_dir_reset()


def child_exit(server: Any, worker: Any) -> None:
    metrics_process_dead(worker.pid)
