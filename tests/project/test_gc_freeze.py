import gc

import pytest
from celery import signals

import enrichment_project.celery  # noqa: F401  (connects the worker's signal receivers)


@pytest.mark.parametrize("signal", [signals.worker_ready, signals.worker_process_init])
def test_a_started_worker_process_takes_its_start_up_heap_out_of_the_collectors_reach(
    signal,
) -> None:
    gc.unfreeze()
    try:
        signal.send(sender=None)
        # Every object alive at start-up (Django, Celery, the apps: ~100,000) is frozen.
        assert gc.get_freeze_count() > 50_000
    finally:
        gc.unfreeze()
