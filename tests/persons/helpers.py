from typing import Any

from rest_framework.response import Response

from persons.models import ContactPoint, Person


def assert_error(response: Response, status: int, code: str) -> dict[str, Any]:
    """The error object of a response in the SPEC's single error shape."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def stored_state() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every person and contact point row, to show that a refused request changed nothing."""
    return (
        list(Person.objects.order_by("pk").values()),
        list(ContactPoint.objects.order_by("pk").values()),
    )


def valid_person(**overrides: Any) -> dict[str, Any]:
    return {
        "firstName": "Ada",
        "lastName": "Lovelace",
        "companyName": "Analytical Engines",
        "companyDomain": "engines.example",
        "linkedinUrl": "https://www.linkedin.com/in/ada-lovelace",
        "title": "Mathematician",
    } | overrides
