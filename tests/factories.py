import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from organizations.models import Membership, Organization
from persons.models import ContactPoint, Person


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Organization {n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)


class PersonFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Person

    organization = factory.SubFactory(OrganizationFactory)
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    company_name = "Acme"
    company_domain = factory.Sequence(lambda n: f"company{n}.example")
    title = "Engineer"


class ContactPointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ContactPoint

    person = factory.SubFactory(PersonFactory)
    kind = ContactPoint.Kind.EMAIL
    value = factory.Sequence(lambda n: f"contact{n}@example.com")
    type = "work"
    provider = "sandbox"
    found_at = factory.LazyFunction(timezone.now)
