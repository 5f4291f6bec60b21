import uuid

from django.db import models
from django.db.models import Q

from organizations.models import Organization


class Person(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="persons")
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    company_name = models.CharField(max_length=200, blank=True)
    company_domain = models.CharField(max_length=253, blank=True)
    linkedin_url = models.URLField(max_length=500, blank=True)
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "-created_at", "-id"], name="person_org_recent"),
        ]
        constraints = [
            # The identity a provider needs: a LinkedIn URL, or a full name at a company.
            models.CheckConstraint(
                condition=~Q(linkedin_url="")
                | (
                    ~Q(first_name="")
                    & ~Q(last_name="")
                    & (~Q(company_domain="") | ~Q(company_name=""))
                ),
                name="person_is_identifiable",
            )
        ]

    def __str__(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return name or self.linkedin_url or str(self.id)


class ContactPoint(models.Model):
    """An email or phone found for a person; erased with the person."""

    class Kind(models.TextChoices):
        EMAIL = "email"
        PHONE = "phone"

    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="contact_points")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    value = models.CharField(max_length=320)
    type = models.CharField(max_length=20, blank=True)
    # As the provider graded it: verified, probable or unknown (also for points found before).
    quality = models.CharField(max_length=10, default="unknown")
    provider = models.CharField(max_length=50, blank=True)
    found_at = models.DateTimeField()

    class Meta:
        ordering = ["kind", "found_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["person", "kind", "value"], name="uniq_contact_point_per_person"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.value}"
