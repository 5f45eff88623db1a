"""What the durable approval tests share: requests, a deciding thread, a local webhook receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from proctor import ApprovalRecord, ApprovalRequest, ApprovalStore

REQUEST = ApprovalRequest(
    rule_id="big_refund",
    message="refunds over 100 need the finance team",
    approvers=("finance",),
    timeout=30.0,
    service="support",
    agent="refund-bot",
    tool="refund",
    run_id="run-1",
    args={"amount": 250, "customer": "jane.doe@example.com"},
    rule_name="Big refunds",
    seq=3,
)


def request(**changes: Any) -> ApprovalRequest:
    """``REQUEST`` with some fields changed."""
    return replace(REQUEST, **changes)


def until(condition: Callable[[], Any], deadline: float = 30.0) -> Any:
    """Wait up to ``deadline`` seconds for ``condition()`` to be truthy; return it, or fail."""
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < end, "the condition did not hold in time"
        time.sleep(0.02)


def pending_one(store: ApprovalStore) -> ApprovalRecord:
    """The only pending request, once there is one."""
    records: list[ApprovalRecord] = until(lambda: store.list(status="pending"))
    assert len(records) == 1
    return records[0]


def in_thread(function: Callable[[], Any]) -> Callable[[], Any]:
    """Start ``function`` in a thread; returns a function that joins it and gives its result (or raises)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def result(timeout: float = 60.0) -> Any:
        thread.join(timeout)
        assert not thread.is_alive(), "the thread did not finish in time"
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    return result


class WebhookReceiver:
    """A real HTTP server on loopback that answers 500 to the first ``failures`` POSTs, then 200."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.attempts = 0
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver._lock:
                    receiver.attempts += 1
                    failing = receiver.attempts <= receiver.failures
                    if not failing:
                        receiver.bodies.append(body)
                        receiver.paths.append(self.path)
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
