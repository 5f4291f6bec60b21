"""`Idempotency-Key` on every POST and PATCH of the API, written once for all views.

The middleware sits next to the view. For a POST or PATCH to a DRF view that carries the header
and a valid API key, it claims the key for the organization in a statement of its own, committed
before the view runs (the services open durable transactions, which a claim cannot wrap); then
the view runs and its response is kept, or the claim is dropped for 400, 401 and 429. Two
identical requests racing meet at the unique constraint: one inserts, the other finds the claim
in flight and is answered 409. A request answered without running its view (replay, 409, 422,
invalid key) still passes through DRF, in `IdempotencyAnswerApi`, so it is authenticated,
throttled and rendered like any API response.
"""

import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from io import BytesIO
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.views import APIView

from enrichment_project.errors import (
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    ServiceError,
    ValidationFailed,
)
from organizations.authentication import ApiKeyAuthentication
from organizations.models import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
METHODS = frozenset({"POST", "PATCH"})
# Responses the client may fix and send again with the same key (SPEC).
NOT_KEPT = frozenset({400, 401, 429})
# Printable ASCII with no space at either end (HTTP strips those anyway), as the schema says.
_VALID_KEY = re.compile(r"[!-~]([ -~]{0,253}[!-~])?")
# A running request usually ends within a second; its claim says nothing of when exactly.
IN_USE_RETRY_AFTER = 1


@dataclass(frozen=True)
class Fingerprint:
    """What makes two requests with one key "the same request"."""

    method: str
    path: str  # with the query string
    body_sha256: str

    @classmethod
    def of(cls, request: HttpRequest, body_limit: int | None = None) -> "Fingerprint":
        return cls(
            method=request.method or "",
            path=request.get_full_path(),
            body_sha256=hashlib.sha256(_body(request, body_limit)).hexdigest(),
        )

    def matches(self, record: IdempotencyKey) -> bool:
        return (self.method, self.path, self.body_sha256) == (
            record.method,
            record.path,
            record.body_sha256,
        )


def _body(request: HttpRequest, limit: int | None) -> bytes:
    """The body, read at most once, under the view's own limit: a view that takes larger bodies
    than DATA_UPLOAD_MAX_MEMORY_SIZE (the CSV import) names its limit in `body_limit_setting`,
    and `request.body` would refuse those. Kept where the view's parser reads it, as
    `HttpRequest.body` itself does."""
    if limit is None or limit <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE or hasattr(request, "_body"):
        return request.body
    if int(request.META.get("CONTENT_LENGTH") or 0) > limit:
        raise RequestDataTooBig
    request._body = request.read(limit + 1)
    request._stream = BytesIO(request._body)
    return request._body


@dataclass(frozen=True)
class Claim:
    record_id: int
    token: uuid.UUID


def _retention() -> timedelta:
    return timedelta(seconds=settings.IDEMPOTENCY_KEY_RETENTION)


_TABLE = IdempotencyKey._meta.db_table
# A row is taken over when it has expired (kept longer than the retention, not yet purged) or
# when the same request's claim outlived its lease (its process died before answering).
_CLAIM_SQL = f"""
INSERT INTO {_TABLE} AS existing (
    organization_id, key, method, path, body_sha256, claim_token, created_at, lease_expires_at,
    response_status, response_headers, response_body
) VALUES (
    %(organization_id)s, %(key)s, %(method)s, %(path)s, %(body_sha256)s, %(token)s, %(now)s,
    %(lease_expires_at)s, NULL, '{{}}', ''
)
ON CONFLICT (organization_id, key) DO UPDATE SET
    method = EXCLUDED.method, path = EXCLUDED.path, body_sha256 = EXCLUDED.body_sha256,
    claim_token = EXCLUDED.claim_token, created_at = EXCLUDED.created_at,
    lease_expires_at = EXCLUDED.lease_expires_at, response_status = NULL,
    response_headers = '{{}}', response_body = ''
WHERE existing.created_at <= %(expired_before)s
    OR (existing.response_status IS NULL AND existing.lease_expires_at <= %(now)s
        AND (existing.method, existing.path, existing.body_sha256)
            = (EXCLUDED.method, EXCLUDED.path, EXCLUDED.body_sha256))
RETURNING id
"""


def _prep(field: str, value: Any) -> Any:
    # As the ORM would send it (SQLite, the embedded default, stores UUIDs and datetimes as text).
    return IdempotencyKey._meta.get_field(field).get_db_prep_value(value, connection)


def idempotency_key_claim(
    *, organization_id: uuid.UUID, key: str, fingerprint: Fingerprint
) -> Claim | IdempotencyKey:
    """Claims the key for this request in one autocommitted statement, or returns the live
    record that holds it (in flight or answered) for the caller to refuse or replay."""
    token = uuid.uuid4()
    # A record found by the INSERT can be deleted (its request got a 400) before the SELECT.
    while True:
        now = timezone.now()
        params = {
            "organization_id": _prep("organization", organization_id),
            "key": key,
            "method": fingerprint.method,
            "path": fingerprint.path,
            "body_sha256": fingerprint.body_sha256,
            "token": _prep("claim_token", token),
            "now": _prep("created_at", now),
            "lease_expires_at": _prep(
                "created_at", now + timedelta(seconds=settings.IDEMPOTENCY_LEASE)
            ),
            "expired_before": _prep("created_at", now - _retention()),
        }
        with connection.cursor() as cursor:
            cursor.execute(_CLAIM_SQL, params)
            inserted = cursor.fetchone()
        if inserted is not None:
            return Claim(record_id=inserted[0], token=token)
        record = IdempotencyKey.objects.filter(organization_id=organization_id, key=key).first()
        if record is not None:
            return record


def idempotency_key_keep(*, claim: Claim, response: HttpResponse) -> None:
    """Keeps the response of the claimed request, or frees the key when it must not be kept."""
    held = IdempotencyKey.objects.filter(pk=claim.record_id, claim_token=claim.token)
    if response.status_code in NOT_KEPT or response.streaming:
        held.delete()
        return
    # Every header the view set (Content-Type, Location, Enrichment-Batch-Id, Credits-*...); the
    # per-request ones (X-Request-ID, RateLimit) are added by outer middleware, after this.
    held.update(
        response_status=response.status_code,
        response_headers=dict(response.headers),
        response_body=response.content,
    )


def idempotency_keys_purge(*, now: datetime | None = None) -> int:
    """Deletes the records older than the retention; returns how many."""
    expired_before = (now or timezone.now()) - _retention()
    deleted, _ = IdempotencyKey.objects.filter(created_at__lte=expired_before).delete()
    return deleted


def _replay(record: IdempotencyKey) -> HttpResponse:
    response = HttpResponse(
        bytes(record.response_body), status=record.response_status, headers=record.response_headers
    )
    response[REPLAYED_HEADER] = "true"
    return response


def _refusal(record: IdempotencyKey, fingerprint: Fingerprint) -> ServiceError | None:
    if not fingerprint.matches(record):
        return IdempotencyKeyReused(
            f"This {HEADER} was used with another request (method, path or body).",
            {"method": record.method, "path": record.path},
        )
    if record.response_status is None:
        return IdempotencyKeyInUse(
            f"A request with this {HEADER} is still being processed; retry shortly.",
            headers={"Retry-After": str(IN_USE_RETRY_AFTER)},
        )
    return None


class IdempotencyAnswerApi(APIView):
    """Answers, through DRF's authentication, throttle and renderers, a request the idempotency
    check settled without running its view: a refusal, or the replay of a kept response."""

    schema = None  # never routed; not part of the OpenAPI document
    outcome: ServiceError | IdempotencyKey | None = None

    @property
    def default_response_headers(self) -> dict[str, str]:
        return {}  # a replay carries exactly the headers it was kept with

    def post(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        if isinstance(self.outcome, IdempotencyKey):
            return _replay(self.outcome)
        raise self.outcome

    patch = post


class IdempotencyMiddleware:
    """Last in MIDDLEWARE, so what it keeps is the view's own response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        claim = getattr(request, "idempotency_claim", None)
        if claim is not None:
            idempotency_key_keep(claim=claim, response=response)
        return response

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponse],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        if (
            request.method not in METHODS
            or HEADER not in request.headers
            or not issubclass(getattr(view_func, "cls", object), APIView)
        ):
            return None
        try:
            resolved = ApiKeyAuthentication().authenticate(Request(request))
            limit_setting = getattr(view_func.cls, "body_limit_setting", None)
            body_limit = getattr(settings, limit_setting) if limit_setting else None
            fingerprint = Fingerprint.of(request, body_limit)
        except (exceptions.AuthenticationFailed, RequestDataTooBig):
            return None  # the view answers 401 or 413, and nothing is kept
        if resolved is None:
            return None  # no credentials: the view answers 401
        key = request.headers[HEADER]
        if not _VALID_KEY.fullmatch(key):
            error = ValidationFailed(
                f"{HEADER} must be 1 to 255 printable ASCII characters.", {"header": HEADER}
            )
            return IdempotencyAnswerApi.as_view(outcome=error)(request)
        found = idempotency_key_claim(
            organization_id=resolved[1].organization_id, key=key, fingerprint=fingerprint
        )
        if isinstance(found, Claim):
            request.idempotency_claim = found
            return None
        outcome = _refusal(found, fingerprint) or found
        return IdempotencyAnswerApi.as_view(outcome=outcome)(request)
