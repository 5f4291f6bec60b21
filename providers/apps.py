from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    name = "providers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from celery.signals import worker_init

        from providers import checks

        worker_init.connect(checks.refuse_misconfigured_worker, dispatch_uid="providers-check")
