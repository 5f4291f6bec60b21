"""The `limit` of the cursor-paginated lists: within 1..200, else refused, never ignored."""

import pytest

from tests.conftest import Tenant
from tests.enrichment.test_batch_api import assert_error

LISTS = ["/api/v1/persons", "/api/v1/enrichments"]


@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize("limit", ["-1", "0", "201", "abc", "1.5", ""])
def test_a_limit_out_of_range_or_not_an_integer_is_a_validation_error(
    tenant: Tenant, url: str, limit: str
) -> None:
    response = tenant.client.get(url, {"limit": limit})

    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert list(error["details"]["fields"]) == ["limit"]


@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize("limit", ["1", "200"])
def test_a_limit_at_either_end_of_the_range_is_accepted(
    tenant: Tenant, url: str, limit: str
) -> None:
    assert tenant.client.get(url, {"limit": limit}).status_code == 200
