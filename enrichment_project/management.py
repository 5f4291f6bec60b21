"""What every management command of the project shares: a human summary, or with `--json` exactly
one JSON object on stdout; a domain error becomes a CommandError (message on stderr, exit status 1)
before anything is printed."""

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder

from enrichment_project.errors import ServiceError


@dataclass(frozen=True)
class Report:
    data: dict[str, Any]
    summary: str


class ReportCommand(BaseCommand):
    """Subclasses implement `report(**options)`; `--json` is added to every parser here, so a
    subclass's `add_arguments` does not have to remember it."""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.add_argument(
            "--json", action="store_true", help="Print one JSON object instead of a summary."
        )
        return parser

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = self.report(**options)
        except ServiceError as error:
            raise CommandError(error.message) from error
        if options["json"]:
            self.stdout.write(json.dumps(report.data, cls=DjangoJSONEncoder))
        else:
            self.stdout.write(report.summary)

    def report(self, **options: Any) -> Report:
        raise NotImplementedError


def whole_number(minimum: int | None = None) -> Callable[[str], int]:
    """An argparse type for whole numbers (at least `minimum` when given). Its error becomes a
    CommandError under call_command, and a usage message with exit status 2 on the command line."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if minimum is not None and number < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, not {number}")
        return number

    return parse
