"""The bench's handle on a child process it runs on the loopback and controls over HTTP: GET at
its control path answers the child's state as JSON, DELETE resets it. Standard library only, as
the children (bench/receiver.py, bench/fake_provider.py) import it too."""

import json
import urllib.request
from typing import Any


class ControlClient:
    def __init__(self, port: int, control_path: str = "/") -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self._control_url = f"{self.base}{control_path}"

    def _call(self, method: str) -> Any:
        request = urllib.request.Request(self._control_url, method=method)
        with urllib.request.urlopen(request, timeout=5) as reply:
            return json.loads(reply.read() or b"null")

    def state(self) -> Any:
        return self._call("GET")

    def reset(self) -> None:
        self._call("DELETE")

    def answers(self) -> bool:
        """The readiness probe: the child serves its control path."""
        try:
            self.state()
        except OSError:
            return False
        return True
