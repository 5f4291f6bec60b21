"""Figures paired with their same-run baselines: median, min and max over the runs, the table
`make bench` prints, and bench/results/latest.json."""

import json
import os
import platform
import statistics
import subprocess
import textwrap
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from django.db import connection

from bench.environment import REDIS_URL, RESULTS, ROOT


@dataclass(frozen=True)
class Summary:
    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> "Summary":
        return cls(statistics.median(values), min(values), max(values))

    def __str__(self) -> str:
        return f"{_number(self.median)} ({_number(self.min)}-{_number(self.max)})"


def _number(value: float) -> str:
    if 0 < abs(value) < 0.1:
        # Shares such as refusals per request: two significant digits, not "0.00".
        return f"{value:.2g}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


@dataclass
class Figure:
    """One measured figure and, run by run, the baseline it is divided by."""

    section: str
    label: str
    unit: str
    baseline_label: str
    values: list[float] = field(default_factory=list)
    baselines: list[float] = field(default_factory=list)

    def ratios(self) -> list[float]:
        return [value / base for value, base in zip(self.values, self.baselines, strict=True)]

    def as_json(self, key: str) -> dict[str, Any]:
        return {
            "key": key,
            "section": self.section,
            "label": self.label,
            "unit": self.unit,
            "values": self.values,
            "summary": asdict(Summary.of(self.values)),
            "baseline": {
                "label": self.baseline_label,
                "values": self.baselines,
                "summary": asdict(Summary.of(self.baselines)),
            },
            "ratio": {"values": self.ratios(), "summary": asdict(Summary.of(self.ratios()))},
        }


@dataclass(frozen=True)
class Target:
    name: str
    key: str
    # The median ratio must reach this, or equal it when `exact`, or stay under it `at_most`;
    # with `every_run`, the lowest run's ratio must reach that too.
    threshold: float
    exact: bool = False
    at_most: bool = False
    every_run: float | None = None


SECTIONS = {
    "a": "a. Batch POST of 100 persons, one organization; baseline: pgbench running the "
    "endpoint's statements at the same concurrency",
    "b": "b. Worker drain of 10,000 enrichments, first queued to last finished, at 0, 200 and "
    "1,000 ms of sandbox latency; baselines: no-op Celery drain (same workers), and the 0 ms drain",
    "c": "c. Settlement on one credit row; baseline: pgbench running the settlement's statements "
    "at the worker's concurrency (ratio = share of the row's capacity used)",
    "d": "d. SQL statements of one batch request (deterministic: measured once); baseline: the "
    "same request for 1 person",
    "e": "e. Worker drain of 1,000 enrichments of one organization with a webhook endpoint "
    "subscribed on a local receiver (nice 19), deliveries on their own worker (nice 19), at 0 "
    "and 200 ms; baseline: the same drain without one",
    "f": "f. Worker drain of 2,000 enrichments, one organization, through the Hunter adapter over "
    "HTTP to a local fake Hunter; baselines: its limit of 200 requests/s (at 200 ms), the requests "
    "it received (refusals), the sandbox's 0 ms drain (at 0 ms, no limits), and the HTTP drain at "
    "0 ms (at 200 and 1,000 ms, no limits)",
}


class Report:
    def __init__(self, setup: dict[str, Any]) -> None:
        self.setup = setup
        self.figures: dict[str, Figure] = {}

    def record(
        self,
        key: str,
        *,
        section: str,
        label: str,
        unit: str,
        value: float,
        baseline: float,
        baseline_label: str,
    ) -> None:
        figure = self.figures.setdefault(key, Figure(section, label, unit, baseline_label))
        figure.values.append(value)
        figure.baselines.append(baseline)

    def ratio(self, key: str) -> Summary:
        return Summary.of(self.figures[key].ratios())

    def table(self, targets: Sequence[Target]) -> str:
        header = ["measurement", "unit", "median (min-max)", "baseline, same runs", "ratio"]
        rows = {
            key: [
                figure.label,
                figure.unit,
                str(Summary.of(figure.values)),
                f"{figure.baseline_label} {Summary.of(figure.baselines)}",
                str(Summary.of(figure.ratios())),
            ]
            for key, figure in self.figures.items()
        }
        widths = [max(len(row[i]) for row in [header, *rows.values()]) for i in range(len(header))]

        def line(cells: Sequence[str]) -> str:
            return (
                "  "
                + "  ".join(
                    cell.ljust(width) for cell, width in zip(cells, widths, strict=True)
                ).rstrip()
            )

        setup = self.setup
        lines = [
            f"{setup['machine']['cpu']}; PostgreSQL {setup['machine']['postgresql']}, "
            f"Redis {setup['machine']['redis']}, commit {setup['machine']['commit']}",
            f"median (min-max) of {setup['runs']} runs; ratio = figure / baseline, run by run",
        ]
        for section, title in SECTIONS.items():
            lines += ["", *textwrap.wrap(title, 100, subsequent_indent="   "), line(header)]
            lines += [
                line(row) for key, row in rows.items() if self.figures[key].section == section
            ]
        lines += ["", "Targets (on the median ratio)"]
        for target in targets:
            ratio = self.ratio(target.key)
            if target.exact:
                wanted = f"== {target.threshold:g}"
            elif target.at_most:
                wanted = f"<= {target.threshold:.1%}"
            else:
                wanted = f">= {target.threshold:.0%}"
            if target.every_run is not None:
                wanted += f", every run >= {target.every_run:.0%}"
            lines.append(f"  {_verdict(target, ratio):<5} {target.name:<56} {ratio!s:<20} {wanted}")
        return "\n".join(lines)

    def write(self, targets: Sequence[Target]) -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        document = {
            "setup": self.setup,
            "figures": [figure.as_json(key) for key, figure in self.figures.items()],
            "targets": [
                {
                    **asdict(target),
                    "ratio": asdict(self.ratio(target.key)),
                    "met": _verdict(target, self.ratio(target.key)) == "met",
                }
                for target in targets
            ],
        }
        (RESULTS / "latest.json").write_text(json.dumps(document, indent=2) + "\n")


def _verdict(target: Target, ratio: Summary) -> str:
    if target.exact:
        return "met" if ratio.min == ratio.max == target.threshold else "MISS"
    if target.at_most:
        return "met" if ratio.median <= target.threshold else "MISS"
    floor = target.every_run if target.every_run is not None else 0
    return "met" if ratio.median >= target.threshold and ratio.min >= floor else "MISS"


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), "")
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores, {mem_kb / 2**20:.0f} GiB RAM",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "postgresql": postgres,
        "redis": redis.Redis.from_url(REDIS_URL).info("server")["redis_version"],
        "commit": commit,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
