import sys

from celery import signals
from django.test import override_settings

from enrichment_project.celery import _set_switch_interval


@override_settings(WORKER_SWITCH_INTERVAL=0.02)
def test_a_starting_worker_lets_a_thread_run_longer_before_it_must_hand_over() -> None:
    # Called directly: the signal's other receivers (Celery's Django fix-up) expect a worker.
    assert _set_switch_interval in signals.worker_init._live_receivers(None)
    default = sys.getswitchinterval()
    try:
        _set_switch_interval()
        assert sys.getswitchinterval() == 0.02
    finally:
        sys.setswitchinterval(default)
