"""Reading Prometheus scrapes in tests."""

from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

# A separate process that moves two counters by `amount` (and 10 x amount), then exits.
INCREMENT = """
import django
django.setup()
from enrichment_project.metrics import CREDITS_CHARGED, ENRICHMENTS_CREATED
ENRICHMENTS_CREATED.labels(field="phones").inc({amount})
CREDITS_CHARGED.inc({amount} * 10)
"""


def labels(**values: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(values.items()))


def scrape_text(text: str) -> Samples:
    return {
        (sample.name, labels(**sample.labels)): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: Client | None = None, **headers: str) -> Samples:
    """GET /metrics through Django, as a Prometheus server would."""
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return scrape_text(response.content.decode())
