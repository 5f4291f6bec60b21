from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser

from enrichment.services import enrichments_requeue_timed_out
from enrichment_project.management import Report, ReportCommand, whole_number


class Command(ReportCommand):
    help = (
        "Re-queues pending enrichments not done within the timeout while they have attempts "
        "left, and ends the others `timeout` with their reservation released. Safe to run "
        "while workers and other copies of it run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=whole_number(minimum=0),
            default=settings.ENRICHMENT_TIMEOUT,
            metavar="SECONDS",
            help="Seconds since queued (ENRICHMENT_TIMEOUT, %(default)s).",
        )
        parser.add_argument(
            "--max-attempts",
            # 0 is allowed: it ends every stuck pending enrichment `timeout`, re-queuing none.
            type=whole_number(minimum=0),
            default=settings.ENRICHMENT_MAX_ATTEMPTS,
            metavar="N",
            help="Attempts after which it times out (ENRICHMENT_MAX_ATTEMPTS, %(default)s); "
            "0 times out every stuck one.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Only list what would change.")

    def report(
        self, *, older_than: int, max_attempts: int, dry_run: bool, **options: Any
    ) -> Report:
        result = enrichments_requeue_timed_out(
            older_than=older_than, max_attempts=max_attempts, dry_run=dry_run
        )
        requeued, timed_out = len(result.requeued), len(result.timed_out)
        if dry_run:
            summary = f"Dry run: would re-queue {requeued} and time out {timed_out} enrichments."
        else:
            summary = f"Re-queued {requeued} and timed out {timed_out} enrichments."
        return Report(
            data={
                "requeued": requeued,
                "timedOut": timed_out,
                "dryRun": dry_run,
                "requeuedIds": result.requeued,
                "timedOutIds": result.timed_out,
            },
            summary=summary,
        )
