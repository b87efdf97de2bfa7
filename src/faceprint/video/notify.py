"""Completion notifications: Rekognition publishes a job's end to an SNS topic; faceprint POSTs
the same message, in SNS's HTTP envelope, to the URL the operator mapped the topic to
(``faceprint serve --sns-topic ARN=URL``).

The envelope is SNS's (``Type: Notification``, ``MessageId``, ``TopicArn``, ``Subject``,
``Message``, ``Timestamp``, ``SignatureVersion``, with SNS's ``x-amz-sns-*`` headers); ``Message``
is Rekognition's completion JSON as a string. The envelope is not signed (``Signature`` is empty):
there is no AWS key to sign it with. Deliveries run on background threads, one per URL, retried
with backoff, so a slow or dead endpoint never holds up the runner or another endpoint.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from faceprint.video.store import JobRow

log = logging.getLogger(__name__)

ATTEMPTS = 5
"""Deliveries tried per notification (the first and 4 retries)."""
BACKOFF = 1.0
"""Seconds before the first retry; doubled before each next one."""
TIMEOUT = 10.0
"""Seconds one POST may take."""


def completion_message(row: JobRow) -> dict[str, Any]:
    """Rekognition's completion message: ``JobId``, ``Status``, ``API``, ``JobTag``, ``Timestamp``
    (epoch milliseconds of the job's end) and ``Video`` (the S3 object's bucket and name)."""
    message: dict[str, Any] = {"JobId": row.job_id, "Status": row.status, "API": row.api}
    if row.job_tag is not None:
        message["JobTag"] = row.job_tag
    message["Timestamp"] = int(round((row.finished or 0.0) * 1000))
    s3 = row.s3_object or {}
    message["Video"] = {"S3ObjectName": s3.get("Name", ""), "S3Bucket": s3.get("Bucket", "")}
    return message


def envelope(topic_arn: str, message: dict[str, Any], now: float) -> dict[str, str]:
    """SNS's HTTP(S) delivery of ``message`` published on ``topic_arn``."""
    return {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": topic_arn,
        "Subject": f"{message['API']} job {message['Status']}",
        "Message": json.dumps(message, separators=(",", ":")),
        "Timestamp": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "SignatureVersion": "1",
        "Signature": "",
        "SigningCertURL": "",
        "UnsubscribeURL": "",
    }


def post(url: str, body: dict[str, str], timeout: float = TIMEOUT) -> None:
    """POST ``body`` as SNS does; raises ``OSError`` (``urllib.error.URLError``) unless answered 2xx."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "text/plain; charset=UTF-8",
        "x-amz-sns-message-type": body["Type"],
        "x-amz-sns-message-id": body["MessageId"],
        "x-amz-sns-topic-arn": body["TopicArn"],
        "User-Agent": "faceprint-sns",
    })
    with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310 (operator's URL); the answer's body is not read
        pass


class Notifier:
    """Sends completion notifications on threads of its own, one per URL, so that an endpoint that
    is down or slow holds up only its own notifications. ``done(job_id)`` is called once a
    notification is delivered or given up (after ``attempts`` tries), so it is not sent again."""

    def __init__(self, done: Callable[[str], None], attempts: int = ATTEMPTS, backoff: float = BACKOFF,
                 timeout: float = TIMEOUT, clock: Callable[[], float] = time.time) -> None:
        self.done = done
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self.clock = clock
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._lanes: dict[str, tuple[queue.Queue[JobRow | None], threading.Thread]] = {}
        """URL -> its queue and the thread delivering it."""
        self._queued: set[str] = set()
        """Jobs whose notification is queued or being delivered: not queued again."""

    def notify(self, row: JobRow) -> None:
        """Queue the notification of a finished job (nothing if it has no channel, or if it is
        queued already); never blocks."""
        if row.notification is None:
            return
        url = row.notification["URL"]
        with self._lock:
            if row.job_id in self._queued:
                return
            self._queued.add(row.job_id)
            lane = self._lanes.get(url)
            if lane is None:
                jobs: queue.Queue[JobRow | None] = queue.Queue()
                thread = threading.Thread(target=self._run, args=(jobs,), name="faceprint-video-notify", daemon=True)
                lane = self._lanes[url] = (jobs, thread)
                thread.start()
        lane[0].put(row)

    def close(self, timeout: float = 2.0) -> None:
        """Stop after the deliveries queued now, waiting at most ``timeout`` seconds in all (what is
        left stays pending in the store, for the next runner)."""
        self._stop.set()
        with self._lock:
            lanes = list(self._lanes.values())
        for jobs, _ in lanes:
            jobs.put(None)
        deadline = time.monotonic() + timeout
        for _, thread in lanes:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self, jobs: queue.Queue[JobRow | None]) -> None:
        while True:
            row = jobs.get()
            if row is None:
                return
            try:
                self._deliver(row)
            finally:
                with self._lock:
                    self._queued.discard(row.job_id)

    def _deliver(self, row: JobRow) -> None:
        channel = row.notification or {}
        body = envelope(channel["SNSTopicArn"], completion_message(row), self.clock())
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                post(channel["URL"], body, self.timeout)
            except (OSError, ValueError) as exc:
                log.warning("Notification of job %s to %s failed (try %d of %d): %s", row.job_id,
                            channel["SNSTopicArn"], attempt, self.attempts, exc)
                if attempt == self.attempts or self._stop.wait(delay):
                    if attempt < self.attempts:
                        return  # closing: left pending for the next runner
                    break
                delay *= 2
            else:
                break
        self.done(row.job_id)
