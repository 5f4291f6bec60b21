"""The bench table's verdict on an upper-bound target (section f's refusals per request)."""

import pytest

from bench.report import Report, Target

SETUP = {
    "machine": {"cpu": "test", "postgresql": "15", "redis": "7", "commit": "abc"},
    "runs": 3,
}
REFUSALS = Target("refusals per request", "f.200ms.refused", 0.005, at_most=True)


def _report(refused: list[int]) -> Report:
    report = Report(SETUP)
    for count in refused:
        report.record(
            "f.200ms.refused",
            section="f",
            label="refused",
            unit="requests",
            value=count,
            baseline=2000,
            baseline_label="requests received:",
        )
    return report


@pytest.mark.parametrize(
    ("refused", "verdict", "shown"),
    [
        # The worst run may exceed the bound: the verdict is on the median, like the others.
        ([0, 4, 30], "met", "0.002 (0.00-0.015)"),
        ([12, 20, 0], "MISS", "0.006 (0.00-0.01)"),
    ],
)
def test_an_at_most_target_is_met_when_its_median_ratio_stays_within_the_bound(
    refused: list[int], verdict: str, shown: str
) -> None:
    table = _report(refused).table([REFUSALS])
    line = next(row for row in table.splitlines() if "refusals per request" in row)
    assert line.split()[0] == verdict
    assert shown in line
    assert line.endswith("<= 0.5%")
