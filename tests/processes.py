"""Runs a Python snippet in a fresh process of the project, for what one process cannot show:
settings read at import, patches a library applies for the life of a process, state shared only
through files or Redis."""

import os
import subprocess
import sys

from django.conf import settings


def python_run(script: str, **environment: str) -> subprocess.CompletedProcess[str]:
    """Runs `script` with the project's settings and this process's environment plus
    `environment`, from the project's directory; its output, or a failure carrying its stderr."""
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=os.environ | {"DJANGO_SETTINGS_MODULE": "enrichment_project.settings"} | environment,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"the script exited with {result.returncode}:\n{result.stderr}"
    return result
