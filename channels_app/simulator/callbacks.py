"""Posting to Touchline: signing (Twilio HMAC, SendGrid ECDSA) and a small timer + worker pool
that runs each message's lifecycle (sent → delivered → read) in order, retrying like a provider."""

from __future__ import annotations

import base64
import heapq
import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twilio.request_validator import RequestValidator

logger = logging.getLogger("channels_app.simulator")

# Touchline may be starting up or briefly overloaded: retry connection errors and 5xx, as the
# providers do (on a much shorter clock). 4xx is final: a signature failure must stay visible.
RETRY_DELAYS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
# Twilio gives a webhook 15 s to answer.
POST_TIMEOUT_SECONDS = 15.0


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """`X-Twilio-Signature` for a form POST of `params` to `url`."""
    return RequestValidator(auth_token).compute_signature(url, params)


@lru_cache(maxsize=4)
def _private_key(pem: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the SendGrid signing key must be an ECDSA (P-256) private key")
    return key


def sendgrid_signature(private_key_pem: str, timestamp: str, payload: str) -> str:
    """`X-Twilio-Email-Event-Webhook-Signature`: base64 ECDSA-SHA256 over timestamp + body."""
    signature = _private_key(private_key_pem).sign(
        (timestamp + payload).encode(), ec.ECDSA(hashes.SHA256())
    )
    return base64.b64encode(signature).decode()


def twilio_form_post(auth_token: str, url: str, params: dict[str, str]) -> Post:
    """A signed, form-encoded Twilio webhook (status callback or inbound message)."""
    body = urlencode(params).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "X-Twilio-Signature": twilio_signature(auth_token, url, params),
        "User-Agent": "TwilioProxy/1.1",
        "I-Twilio-Idempotency-Token": params.get("MessageSid", "")
        + params.get("MessageStatus", ""),
    }
    return Post(url=url, build=lambda: (body, headers))


def sendgrid_events_post(private_key_pem: str, url: str, events: list[dict[str, Any]]) -> Post:
    """A signed SendGrid event webhook; signed per attempt so the timestamp stays fresh."""
    # Compact JSON ending in CRLF, like SendGrid's own (see sendgrid-python's webhook test): a
    # receiver that re-serialises the JSON instead of verifying the raw body fails here too.
    payload = json.dumps(events, separators=(",", ":")) + "\r\n"

    def build() -> tuple[bytes, dict[str, str]]:
        timestamp = str(int(time.time()))
        return payload.encode(), {
            "Content-Type": "application/json",
            "User-Agent": "SendGrid Event API",
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            "X-Twilio-Email-Event-Webhook-Signature": sendgrid_signature(
                private_key_pem, timestamp, payload
            ),
        }

    return Post(url=url, build=build)


@dataclass
class Post:
    """One HTTP POST to Touchline; `build` returns (body, headers) for each attempt."""

    url: str
    build: Callable[[], tuple[bytes, dict[str, str]]]


@dataclass
class Outcome:
    """What one attempt got back."""

    http_status: int | None = None
    error: str | None = None
    response_text: str = ""

    @property
    def retryable(self) -> bool:
        """Connection errors, timeouts and 5xx are retried."""
        return self.http_status is None or self.http_status >= 500


_session_local = threading.local()


def post_now(post: Post) -> requests.Response:
    """Send one attempt on this thread's keep-alive session; raises requests' network errors."""
    session: requests.Session | None = getattr(_session_local, "session", None)
    if session is None:
        session = _session_local.session = requests.Session()
    body, headers = post.build()
    return session.post(
        post.url, data=body, headers=headers, timeout=POST_TIMEOUT_SECONDS, allow_redirects=False
    )


def describe_failure(exc: requests.RequestException) -> str:
    """A short, readable reason (requests' own messages run to several hundred characters)."""
    if isinstance(exc, requests.Timeout):
        return f"no answer within {POST_TIMEOUT_SECONDS:.0f} s"
    if isinstance(exc, requests.ConnectionError):
        return "could not connect (is Touchline running?)"
    return f"{type(exc).__name__}: {exc}"[:200]


def post_once(post: Post) -> tuple[Outcome, requests.Response | None]:
    """Send one attempt; network errors become an Outcome instead of raising."""
    try:
        response = post_now(post)
    except requests.RequestException as exc:
        return Outcome(error=describe_failure(exc)), None
    return Outcome(http_status=response.status_code, response_text=response.text[:300]), response


@dataclass(order=True)
class _Timer:
    due: float
    seq: int
    job: Callable[[], None] = field(compare=False)


# What a due lifecycle step posts, with a hook recording each attempt's outcome (attempt
# number, outcome, and whether it is the last attempt).
Prepared = tuple[Post, Callable[[int, Outcome, bool], None]]
# A lifecycle step, called when due: it updates the simulated status and returns what to post
# (None: nothing to post, e.g. no StatusCallback or callbacks switched off).
StepFn = Callable[[], Prepared | None]
Step = tuple[float, StepFn]


def attempt_entry(name: str, attempt: int, outcome: Outcome) -> dict[str, Any]:
    """How one post attempt is logged in a message's `events`."""
    return {
        "name": name,
        "attempt": attempt,
        "http_status": outcome.http_status,
        "error": outcome.error,
        "response": outcome.response_text[:200],
    }


class Dispatcher:
    """A timer heap feeding a pool of daemon workers. Steps of one lifecycle run strictly one
    after another (a step's retries finish before the next step's delay starts)."""

    def __init__(self, workers: int = 16) -> None:
        self._heap: list[_Timer] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._timer_loop, name="sim-timers", daemon=True),
            *(
                threading.Thread(target=self._work_loop, name=f"sim-callbacks-{i}", daemon=True)
                for i in range(workers)
            ),
        ]
        for thread in self._threads:
            thread.start()

    def schedule(self, delay: float, job: Callable[[], None]) -> None:
        """Run `job` on a worker after `delay` seconds."""
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, _Timer(time.monotonic() + delay, next(self._seq), job))
            self._cond.notify()

    def run_lifecycle(self, steps: list[Step]) -> None:
        """Run the steps in order, each after its delay, retrying failed posts."""
        if steps:
            self.schedule(steps[0][0], lambda: self._run_step(steps, 0, attempt=1, prepared=None))

    def _run_step(
        self,
        steps: list[Step],
        index: int,
        *,
        attempt: int,
        prepared: Prepared | None,
    ) -> None:
        if prepared is None:
            prepared = steps[index][1]()
        if prepared is not None:
            post, record = prepared
            outcome, _ = post_once(post)
            retry = outcome.retryable and attempt <= len(RETRY_DELAYS) and not self._stopped
            record(attempt, outcome, not retry)
            if retry:
                delay = RETRY_DELAYS[attempt - 1]
                self.schedule(
                    delay,
                    lambda: self._run_step(steps, index, attempt=attempt + 1, prepared=prepared),
                )
                return
        if index + 1 < len(steps):
            self.schedule(
                steps[index + 1][0],
                lambda: self._run_step(steps, index + 1, attempt=1, prepared=None),
            )

    def stop(self) -> None:
        """Drop pending timers and let the workers end (in-flight posts finish on their own)."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()
        for _ in self._threads:
            self._jobs.put(None)

    def _timer_loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (
                    not self._heap or self._heap[0].due > time.monotonic()
                ):
                    timeout = self._heap[0].due - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                timer = heapq.heappop(self._heap)
            self._jobs.put(timer.job)

    def _work_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None or self._stopped:
                return
            try:
                job()
            except Exception:
                # A bug in one lifecycle must not kill the worker serving all the others.
                logger.exception("simulator callback job failed")
