"""The worker baseline's task, registered only in the bench worker (`-I bench.noop_tasks`)."""

from enrichment_project.celery import app

NOOP_TASK = "bench.noop"


@app.task(name=NOOP_TASK)
def noop() -> None:
    """Does nothing: draining it measures the broker and the pool alone."""
