"""Standard Webhooks signing: the `standardwebhooks` package computes each signature."""

import secrets
from base64 import b64encode
from collections.abc import Sequence
from datetime import datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"


def secret_generate() -> str:
    return SECRET_PREFIX + b64encode(secrets.token_bytes(32)).decode()


def signature_header(
    *, secrets_in_use: Sequence[str], message_id: str, timestamp: datetime, body: str
) -> str:
    """`webhook-signature`: one `v1,<base64>` per secret in use, separated by spaces, so a
    receiver that still knows only the previous secret keeps verifying during a rotation."""
    return " ".join(
        Webhook(secret).sign(msg_id=message_id, timestamp=timestamp, data=body)
        for secret in secrets_in_use
    )
