import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from enrichment_project.errors import NotFound, ValidationFailed
from organizations.models import ApiKey, Membership, Organization

KEY_PREFIX = "ek"
# last_used_at is refreshed at most this often, so authentication stays one read per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedApiKey:
    api_key: ApiKey
    secret: str


def hash_api_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def split_api_key(raw_key: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


def organization_create(*, name: str) -> Organization:
    name = name.strip()
    if not name:
        raise ValidationFailed("Organization name must not be empty.")
    max_length = Organization._meta.get_field("name").max_length
    if len(name) > max_length:
        raise ValidationFailed(f"Organization name must be at most {max_length} characters.")
    # The unique constraint decides, not an earlier SELECT: two concurrent creations of one name
    # both pass an exists() check. The savepoint keeps a caller's transaction usable.
    try:
        with transaction.atomic():
            return Organization.objects.create(name=name)
    except IntegrityError as error:
        raise ValidationFailed(f"An organization named {name!r} already exists.") from error


def organization_resolve(*, ref: str) -> Organization:
    """An organization by id or by its unique name."""
    found = Organization.objects.filter(name=ref).first()
    if found is None:
        try:
            found = Organization.objects.filter(pk=ref).first()
        except (ValueError, DjangoValidationError):  # not a UUID
            found = None
    if found is None:
        raise NotFound(f"No organization with id or name {ref!r}.")
    return found


def api_key_create(*, organization: Organization, username: str, name: str = "") -> IssuedApiKey:
    user_model = get_user_model()
    with transaction.atomic():
        user, _ = user_model.objects.get_or_create(username=username)
        Membership.objects.get_or_create(organization=organization, user=user)
        prefix = secrets.token_hex(6)
        secret = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
        api_key = ApiKey.objects.create(
            organization=organization,
            user=user,
            name=name,
            prefix=prefix,
            key_hash=hash_api_key(secret),
        )
    return IssuedApiKey(api_key=api_key, secret=secret)


def api_key_revoke(*, api_key: ApiKey) -> None:
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def api_key_authenticate(*, raw_key: str) -> tuple[AbstractBaseUser, ApiKey] | None:
    """The user and key behind a raw key, or None when it is malformed, unknown or revoked."""
    prefix = split_api_key(raw_key)
    if prefix is None:
        return None
    api_key = (
        ApiKey.objects.select_related("user", "organization")
        .filter(prefix=prefix, revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    # Compared in constant time so response timing does not reveal how much of a hash matched.
    if api_key is None or not hmac.compare_digest(api_key.key_hash, hash_api_key(raw_key)):
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key.user, api_key
