"""WebhookNotifier: tell each approver group about a new approval request, from a background thread."""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from proctor.__version__ import __version__
from proctor._signals import leave_signals_to_main_thread
from proctor.approvals.approvers import Approvers
from proctor.approvals.store import ApprovalRecord

__all__ = ["DEFAULT_CONSOLE_URL", "WebhookNotifier"]

logger = logging.getLogger("proctor.approvals")

DEFAULT_CONSOLE_URL = "http://127.0.0.1:8470"
"""The console the links in notifications point to, unless ``$PROCTOR_CONSOLE_URL`` says otherwise."""


@dataclass(slots=True)
class _Delivery:
    url: str
    body: bytes
    approval_id: str
    tries: int = 0


class WebhookNotifier:
    """Posts new approval requests to their groups' webhooks, retrying with backoff.

    Each group of the request (every group, for a request without groups)
    that has a webhook gets one JSON POST: the request's fields, its redacted
    arguments, and ``url``, its page in the console. Posting happens on a
    daemon thread; a webhook that keeps failing is logged and given up on,
    and the request itself is never affected.

    Parameters:
        console_url: the console's base URL; ``$PROCTOR_CONSOLE_URL``, else ``http://127.0.0.1:8470``.
        retries: the pauses, in seconds, before each retry: ``len(retries) + 1`` tries in all.
        timeout: seconds one POST may take.
    """

    def __init__(
        self,
        console_url: str | None = None,
        *,
        retries: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
        timeout: float = 5.0,
    ) -> None:
        base = console_url or os.environ.get("PROCTOR_CONSOLE_URL") or DEFAULT_CONSOLE_URL
        self.console_url = base.rstrip("/")
        self.retries = tuple(retries)
        self.timeout = timeout
        self.sent = 0
        """Notifications delivered (a 2xx answer)."""
        self.failed = 0
        """Notifications given up on after every try failed."""
        self._due: list[tuple[float, int, _Delivery]] = []  # a heap by the time of the next try
        self._order = itertools.count()
        self._unfinished = 0
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None

    def payload(self, record: ApprovalRecord) -> dict[str, Any]:
        """The JSON body posted for ``record``."""
        return {
            "id": record.id,
            "run_id": record.run_id,
            "service": record.service,
            "agent": record.agent,
            "tool": record.tool,
            "rule_id": record.rule_id,
            "rule_name": record.rule_name,
            "message": record.message,
            "args": record.args,
            "approvers": list(record.approvers),
            "quorum": record.quorum,
            "deadline": record.deadline,
            "url": f"{self.console_url}/approvals/{record.id}",
        }

    def notify(self, record: ApprovalRecord, approvers: Approvers) -> int:
        """Queue one POST per webhook of ``record``'s groups; returns how many. Never raises."""
        try:
            groups = record.approvers or tuple(approvers.groups)
            urls = dict.fromkeys(url for url in map(approvers.webhook, groups) if url is not None)
            if not urls:
                return 0
            body = json.dumps(self.payload(record), ensure_ascii=False).encode()
            with self._condition:
                for url in urls:
                    self._schedule(_Delivery(url, body, record.id), time.monotonic())
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._deliver, name="proctor-webhooks", daemon=True
                    )
                    self._thread.start()
            return len(urls)
        except Exception:  # a notification must never fail the action that asked for approval
            logger.exception("could not queue the webhooks of approval %s", record.id)
            return 0

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued notification is delivered or given up on; False on timeout."""
        with self._condition:
            return self._condition.wait_for(lambda: self._unfinished == 0, timeout)

    def _schedule(self, delivery: _Delivery, when: float) -> None:
        """Queue ``delivery`` for ``when`` (monotonic seconds); the caller holds the condition."""
        if delivery.tries == 0:
            self._unfinished += 1
        heapq.heappush(self._due, (when, next(self._order), delivery))
        self._condition.notify_all()

    def _deliver(self) -> None:
        leave_signals_to_main_thread()
        while True:
            with self._condition:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._condition.wait(self._due[0][0] - time.monotonic() if self._due else None)
                delivery = heapq.heappop(self._due)[2]
            error = self._post(delivery)
            delivery.tries += 1
            with self._condition:
                if error is None:
                    self.sent += 1
                elif delivery.tries <= len(self.retries):
                    logger.info(
                        "webhook %s for approval %s failed (%s); trying again",
                        delivery.url,
                        delivery.approval_id,
                        error,
                    )
                    self._schedule(delivery, time.monotonic() + self.retries[delivery.tries - 1])
                    continue
                else:
                    self.failed += 1
                    logger.error(
                        "webhook %s for approval %s failed %d times, last: %s. The request is still in the "
                        "database: `proctor approvals show %s`",
                        delivery.url,
                        delivery.approval_id,
                        delivery.tries,
                        error,
                        delivery.approval_id,
                    )
                self._unfinished -= 1
                self._condition.notify_all()

    def _post(self, delivery: _Delivery) -> str | None:
        """POST the delivery once; None when the webhook accepted it, else what went wrong."""
        request = urllib.request.Request(
            delivery.url,
            data=delivery.body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": f"proctor/{__version__}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            exc.close()
            return f"HTTP {exc.code}"
        except Exception as exc:  # refused, unreachable, timed out, a bad URL: all worth a retry
            return f"{type(exc).__name__}: {exc}"
        return None if 200 <= status < 300 else f"HTTP {status}"
