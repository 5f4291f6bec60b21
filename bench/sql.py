"""The SQL baselines: statements captured from the real code path, turned into pgbench scripts
that run exactly those statements, in the same transactions, with ids computed per batch."""

import math
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connection

from bench.environment import database_parts
from bench.fixtures import BATCHES_PER_CLIENT_MAX, BLOCK_BASE

PGBENCH = os.environ.get("PGBENCH", "/usr/bin/pgbench")


@dataclass(frozen=True)
class Statement:
    sql: str
    params: Any
    many: bool
    in_transaction: bool

    def literal(self) -> str:
        """The statement as sent; an executemany (pipelined by psycopg) becomes one compound
        query, which pgbench also sends in one round trip."""
        if self.many:
            return " \\; ".join(connection.ops.compose_sql(self.sql, row) for row in self.params)
        return connection.ops.compose_sql(self.sql, self.params)


@contextmanager
def statements_captured() -> Iterator[list[Statement]]:
    """Every statement the default connection executes, like CaptureQueriesContext, but with
    the parameters of executemany too and whether it ran inside a transaction."""
    captured: list[Statement] = []

    def record(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        rows = list(params) if many else params
        captured.append(Statement(sql, rows, many, connection.in_atomic_block))
        return execute(sql, rows, many, context)

    with connection.execute_wrapper(record):
        yield captured


def pgbench_script(
    statements: Sequence[Statement], block: int, replacements: dict[str, str]
) -> str:
    """A pgbench script replaying the statements; the ids of `block` become those of the
    client's next block (see bench.fixtures), other literals in `replacements` are swapped."""
    # UUIDs are sent as 32 hex digits, the block last: `:b` is followed by a quote or a comma.
    block_ids = re.compile(f"{block:012d}(?![0-9a-f])")
    lines = [
        "\\set n :n + 1",
        f"\\set b {BLOCK_BASE} + :client_id * {BATCHES_PER_CLIENT_MAX} + :n",
    ]
    in_transaction = False
    for statement in statements:
        if statement.in_transaction != in_transaction:
            lines.append("BEGIN;" if statement.in_transaction else "COMMIT;")
            in_transaction = statement.in_transaction
        text = statement.literal()
        for old, new in replacements.items():
            text = text.replace(old, new)
        lines.append(block_ids.sub("0000:b", text) + ";")
    if in_transaction:
        lines.append("COMMIT;")
    script = "\n".join(lines) + "\n"
    if any(old in script for old in replacements) or "0000:b" not in script:
        raise ValueError("The captured statements do not carry the expected ids.")
    return script


def ids_returned_in_pgbench(script: str, table: str, reference: str) -> str:
    """Rows that the captured statements pointed at the ids an `INSERT INTO table ... RETURNING
    id` returned (`reference = <id>`, or a bigint array of them, as an UPDATE joined to arrays
    sends them) point at the ids pgbench's own insert returned: its last id is kept with
    \\aset, and the others are consecutive because that insert runs under the credit row lock,
    so no other transaction draws from the sequence meanwhile."""
    insert = re.compile(rf'(INSERT INTO "{table}" .* RETURNING "{table}"\."id");')
    script, inserts = insert.subn(r"\1 \\aset returned_", script)
    pointers = re.compile(rf'"{reference}" = (\d+)')
    arrays = re.compile(r"'\{([0-9NUL,]+)\}'::\w+\[\]::bigint\[\]")
    captured = [int(found) for found in pointers.findall(script)] + [
        int(value)
        for found in arrays.findall(script)
        for value in found.split(",")
        if value != "NULL"
    ]
    if inserts != 1 or not captured:
        raise ValueError(f"Expected one insert into {table} and rows pointing at it.")
    last = max(captured)

    def returned(value: str) -> str:
        return "NULL" if value == "NULL" else f"(:returned_id - {last - int(value)})"

    script = pointers.sub(lambda found: f'"{reference}" = {returned(found[1])}', script)
    return arrays.sub(
        lambda found: f"ARRAY[{', '.join(map(returned, found[1].split(',')))}]::bigint[]", script
    )


@dataclass(frozen=True)
class Throughput:
    per_second: float
    p50_ms: float
    p99_ms: float


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


def throughput(spans: Sequence[tuple[float, float]]) -> Throughput:
    """Operations per second from the first start to the last end, and latency percentiles."""
    elapsed = max(end for _, end in spans) - min(start for start, _ in spans)
    latencies_ms = [(end - start) * 1000 for start, end in spans]
    return Throughput(
        per_second=len(spans) / elapsed,
        p50_ms=percentile(latencies_ms, 0.5),
        p99_ms=percentile(latencies_ms, 0.99),
    )


def pgbench_run(script: str, clients: int, transactions: int, first_batch: int = 1) -> Throughput:
    """Runs the script on `clients` connections, `transactions` each, client c using the blocks
    of its batches first_batch, first_batch + 1, ...; measured from the per-transaction log."""
    parts = database_parts()
    with tempfile.TemporaryDirectory(prefix="pgbench-") as folder:
        path = Path(folder) / "script.sql"
        path.write_text(script)
        args = [PGBENCH, "-n", "-M", "simple", "-f", str(path)]
        args += ["-c", str(clients), "-j", str(min(clients, os.cpu_count() or 1))]
        args += ["-t", str(transactions), "-D", f"n={first_batch - 1}"]
        args += ["-l", "--log-prefix", str(Path(folder) / "log")]
        args += ["-h", parts["host"], "-p", parts["port"], "-U", parts["user"], parts["dbname"]]
        done = subprocess.run(args, capture_output=True, text=True, check=False)
        processed = re.search(r"actually processed: (\d+)/(\d+)", done.stdout)
        if done.returncode or not processed or processed[1] != processed[2]:
            raise RuntimeError(f"pgbench failed:\n{done.stdout}\n{done.stderr}")
        spans = []
        for log in Path(folder).glob("log.*"):
            for line in log.read_text().splitlines():
                # client, transaction, latency (us), script, end (s), end (us)
                _, _, latency_us, _, end_s, end_us = line.split()[:6]
                end = int(end_s) + int(end_us) / 1e6
                spans.append((end - int(latency_us) / 1e6, end))
    return throughput(spans)
