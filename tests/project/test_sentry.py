"""SENTRY_DSN: an unexpected error reaches the Sentry server (a local one standing in for the
ingestion endpoint) without the personal data of the request that hit it.

sentry-sdk patches Django and Celery for the life of the process, so the service runs in a
subprocess of its own with SENTRY_DSN set, as a deployment would."""

import gzip
import json

from pytest_httpserver import HTTPServer

from tests.processes import python_run

API_KEY = "ek_sentrytest_Sup3rSecretKeyMaterial0123456789abcdef"
PERSON = {"firstName": "Ada", "lastName": "Lovelace", "companyDomain": "analytical.example"}

# The database is unreachable, so authenticating the key fails: an error nobody planned for.
# The request goes through Django's WSGI handler, as under gunicorn (werkzeug builds it).
REQUEST_AN_UNPLANNED_ERROR = f"""
import sentry_sdk
from django.core.wsgi import get_wsgi_application
from werkzeug.test import Client
response = Client(get_wsgi_application()).post(
    "/api/v1/persons", data={json.dumps(PERSON)!r}, content_type="application/json",
    headers={{"Authorization": "Bearer {API_KEY}", "X-Request-ID": "sentry-trace-9",
              "Cookie": "sessionid=cookie-must-not-leave"}},
)
assert response.status_code == 500, response.data
sentry_sdk.flush(timeout=10)
"""


# A job whose database is unreachable fails inside the task.
RUN_A_FAILING_TASK = """
import django, sentry_sdk
django.setup()
from enrichment.tasks import process_enrichments
assert process_enrichments.apply(args=[["0b9a3c1e-5d7f-4e2a-9c8b-1f2e3d4c5b6a"]]).failed()
sentry_sdk.flush(timeout=10)
"""


def run_with_sentry(httpserver: HTTPServer, script: str) -> tuple[list[dict], bytes]:
    """Runs `script` in a process with SENTRY_DSN pointing at `httpserver` and an unreachable
    database; the error events the server received, and every byte it received."""
    httpserver.expect_request("/api/1/envelope/", method="POST").respond_with_data("{}")
    python_run(
        script,
        SENTRY_DSN=f"http://publickey@127.0.0.1:{httpserver.port}/1",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/no_such_database_for_sentry_test",
    )
    bodies = []
    for request, _response in httpserver.log:
        body = request.get_data()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        bodies.append(body)
    # An envelope: a header line, then pairs of (item header, item) lines.
    items = [json.loads(line) for body in bodies for line in body.splitlines()[2::2]]
    return [item for item in items if "exception" in item], b"".join(bodies)


def test_an_unexpected_error_reaches_sentry_without_personal_data(httpserver: HTTPServer):
    events, received = run_with_sentry(httpserver, REQUEST_AN_UNPLANNED_ERROR)

    assert events, "no error event reached the Sentry server"
    [event] = events
    exception = event["exception"]["values"][-1]
    assert exception["type"] == "OperationalError"
    assert event["request"]["method"] == "POST"
    assert event["request"]["url"].endswith("/api/v1/persons")
    assert "sentry-trace-9" in json.dumps(event)  # the error log's message carries the request id
    # No API key (sentry-sdk keeps the header's name, "[Filtered]"), no body, no cookies, no
    # user, no local variables.
    everything = received.decode()
    for personal in (API_KEY, "Lovelace", "Ada", "analytical.example", "cookie-must-not-leave"):
        assert personal not in everything
    headers = {name.lower(): value for name, value in event["request"]["headers"].items()}
    assert headers["authorization"] == "[Filtered]" and "cookie" not in headers
    assert not event["request"].get("data") and "cookies" not in event["request"]
    assert "user" not in event
    frames = exception["stacktrace"]["frames"]
    assert frames and not any("vars" in frame for frame in frames)


def test_a_failing_task_reaches_sentry_with_its_task_id(httpserver: HTTPServer):
    events, _received = run_with_sentry(httpserver, RUN_A_FAILING_TASK)

    assert events, "no error event reached the Sentry server"
    [event] = events
    assert event["exception"]["values"][-1]["type"] == "OperationalError"
    assert event["tags"]["celery_task_id"]
    assert event["extra"]["celery-job"]["task_name"] == "enrichment.process_enrichments"
