from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    name = "providers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from celery.signals import worker_init, worker_process_shutdown, worker_shutdown
        from django.test.signals import setting_changed

        from providers import checks, registry
        from providers.calls import calls_flush_at_exit

        worker_init.connect(checks.refuse_misconfigured_worker, dispatch_uid="providers-check")
        # A prefork child says worker_process_shutdown; a thread or solo pool's only process,
        # worker_shutdown. The calls still buffered are written either way.
        worker_process_shutdown.connect(calls_flush_at_exit, dispatch_uid="providers-flush")
        worker_shutdown.connect(calls_flush_at_exit, dispatch_uid="providers-flush-main")
        setting_changed.connect(registry.adapters_forget, dispatch_uid="providers-settings")
