"""Error reporting to Sentry (or any server that speaks its protocol), on when SENTRY_DSN is set.

No personal data leaves: no user, cookies, IP addresses or auth headers (send_default_pii=False),
no request bodies (a person's name or email would be in them), and no stack-frame local variables
(they hold persons and API keys while a request runs). What is sent: the exception, its stack
trace (file, line, function), the request's method, URL and remaining headers, the request id
from the logs' context, and the Celery task's name and id.
"""

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration


def sentry_init(*, dsn: str, environment: str | None, traces_sample_rate: float) -> None:
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        send_default_pii=False,
        max_request_body_size="never",
        include_local_variables=False,
        traces_sample_rate=traces_sample_rate,
    )
