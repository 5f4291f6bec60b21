import logging

from django.apps import AppConfig
from django.conf import settings


class ProvidersConfig(AppConfig):
    name = "providers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from celery.signals import (
            worker_init,
            worker_process_init,
            worker_process_shutdown,
            worker_shutdown,
        )
        from django.test.signals import setting_changed

        from providers import checks, registry
        from providers.calls import calls_flush_at_exit

        worker_init.connect(checks.refuse_misconfigured_worker, dispatch_uid="providers-check")
        # A prefork child after its fork; a thread or solo pool's only process at its start.
        worker_process_init.connect(registry.http_clients_open, dispatch_uid="providers-http")
        worker_init.connect(registry.http_clients_open, dispatch_uid="providers-http-main")
        # A prefork child says worker_process_shutdown; a thread or solo pool's only process,
        # worker_shutdown. The calls still buffered are written either way.
        worker_process_shutdown.connect(calls_flush_at_exit, dispatch_uid="providers-flush")
        worker_shutdown.connect(calls_flush_at_exit, dispatch_uid="providers-flush-main")
        setting_changed.connect(registry.adapters_forget, dispatch_uid="providers-settings")
        # httpx logs every request at INFO, its URL carrying the subject's name and company: the
        # provider call log records every request already, so only httpx's warnings are kept,
        # unless LOGGING configures its logger.
        if "httpx" not in settings.LOGGING.get("loggers", {}):
            logging.getLogger("httpx").setLevel(logging.WARNING)
