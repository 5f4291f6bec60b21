import uuid
from collections.abc import Iterable

from django.utils import timezone

from persons.models import ContactPoint


def contact_points_add(
    *, person_id: uuid.UUID, kind: str, found: Iterable[tuple[str, str]], provider: str
) -> None:
    """Saves found (value, type) pairs on the person; a value it already has is kept as it is."""
    now = timezone.now()
    ContactPoint.objects.bulk_create(
        [
            ContactPoint(
                person_id=person_id,
                kind=kind,
                value=value,
                type=value_type,
                provider=provider,
                found_at=now,
            )
            for value, value_type in found
        ],
        ignore_conflicts=True,
    )
