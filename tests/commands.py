"""Runs management commands the way the tests need them: output captured, `--json` parsed."""

import json
from io import StringIO
from typing import Any

from django.core.management import call_command


def run_command(name: str, *args: str) -> str:
    """The command's stdout; a failure raises CommandError as call_command does."""
    stdout, stderr = StringIO(), StringIO()
    call_command(name, *args, stdout=stdout, stderr=stderr)
    assert stderr.getvalue() == ""
    return stdout.getvalue()


def run_json(name: str, *args: str) -> dict[str, Any]:
    """The one JSON object the command prints with --json (json.loads refuses anything more)."""
    return json.loads(run_command(name, *args, "--json"))
