"""Thread-safe store of what the simulator saw: messages (both directions), rejected requests and
the current failure injection. Readers always get copies, so callers can never race the server."""

from __future__ import annotations

import copy
import threading
from collections import Counter, deque
from datetime import UTC, datetime
from typing import Any

from .config import Injection

Record = dict[str, Any]


def now_iso() -> str:
    """The current UTC time as ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


TOUCHLINE_ID_KEYS = ("mid", "message_id", "touchline_message_id")


def touchline_id_from(*sources: dict[str, Any]) -> str | None:
    """Touchline's own message id, if it put one where PROVIDERS.md says (a StatusCallback query
    parameter or a SendGrid custom arg); used to count duplicate sends of one message."""
    for source in sources:
        for name in TOUCHLINE_ID_KEYS:
            value = source.get(name)
            if isinstance(value, list):
                value = value[0] if value else None
            if value:
                return str(value)
    return None


def customer_key(address: str) -> str:
    """How a customer is grouped on the page: phones and whatsapp:… as given, emails lowercased."""
    return address.strip().lower() if "@" in address else address.strip()


class SimulatorState:
    """Recorded messages and settings, guarded by one lock."""

    def __init__(self, injection: Injection) -> None:
        self._lock = threading.RLock()
        self._defaults = injection.copy()
        self._injection = injection.copy()
        self._messages: list[Record] = []
        self._by_key: dict[str, Record] = {}
        self._rejected: list[Record] = []
        self._touchline_ids: Counter[str] = Counter()
        self._notices: deque[str] = deque(maxlen=6)
        # Bumped on every change so the page can poll cheaply; `generation` on reset so that
        # lifecycles of forgotten messages stop posting callbacks.
        self.version = 0
        self.generation = 0

    # --- settings ---------------------------------------------------------------------------
    @property
    def injection(self) -> Injection:
        """A copy of the current failure injection."""
        with self._lock:
            return self._injection.copy()

    def configure(self, changes: dict[str, Any]) -> Injection:
        """Apply validated changes (ValueError on bad input) and return the new settings."""
        with self._lock:
            self._injection = self._injection.updated(changes)
            self.version += 1
            return self._injection.copy()

    def reset(self) -> None:
        """Forget everything recorded and restore the configured injection defaults."""
        with self._lock:
            self._injection = self._defaults.copy()
            self._messages.clear()
            self._by_key.clear()
            self._rejected.clear()
            self._touchline_ids.clear()
            self._notices.clear()
            self.generation += 1
            self.version += 1

    # --- recording --------------------------------------------------------------------------
    def add_message(self, record: Record) -> Record:
        """Store a message; `record["key"]` must be unique. Returns a copy as stored."""
        with self._lock:
            tid = record.get("touchline_id")
            if tid and record.get("direction") == "outbound":
                self._touchline_ids[tid] += 1
                record["request_count_for_id"] = self._touchline_ids[tid]
            else:
                record.setdefault("request_count_for_id", 1)
            record.setdefault("status_history", [])
            record.setdefault("events", [])
            record.setdefault("settled", [])
            if record.get("status"):
                record["status_history"].append({"status": record["status"], "at": now_iso()})
            self._messages.append(record)
            self._by_key[record["key"]] = record
            self.version += 1
            return copy.deepcopy(record)

    def add_rejected(self, record: Record) -> None:
        """Store a request answered with an error."""
        with self._lock:
            record.setdefault("received_at", now_iso())
            self._rejected.append(record)
            self.version += 1

    def set_status(
        self, key: str, status: str, *, error_code: int | None = None, generation: int | None = None
    ) -> Record | None:
        """Move a message to `status`; None if it was forgotten by a reset meanwhile."""
        with self._lock:
            record = self._by_key.get(key)
            if record is None or (generation is not None and generation != self.generation):
                return None
            record["status"] = status
            if error_code is not None:
                record["error_code"] = error_code
            entry: Record = {"status": status, "at": now_iso()}
            if error_code is not None:
                entry["error_code"] = error_code
            record["status_history"].append(entry)
            self.version += 1
            return copy.deepcopy(record)

    def add_event(self, key: str, entry: Record | None, *, settled: str | None = None) -> None:
        """Log one callback attempt (or other note) on a message; `settled` names a status whose
        callback is finished (answered, given up, or nothing to post) for `wait_for`."""
        with self._lock:
            record = self._by_key.get(key)
            if record is not None:
                if entry is not None:
                    entry.setdefault("at", now_iso())
                    record["events"].append(entry)
                if settled is not None:
                    record["settled"].append(settled)
                self.version += 1

    def notice(self, text: str) -> None:
        """A one-line note shown at the top of the page (results of page actions)."""
        with self._lock:
            self._notices.appendleft(f"{datetime.now(UTC):%H:%M:%S} {text}")
            self.version += 1

    # --- reading ----------------------------------------------------------------------------
    def messages(self, **filters: str | None) -> list[Record]:
        """Copies of recorded messages, oldest first, matching every non-None filter exactly
        (`to` also matches emails case-insensitively)."""
        wanted = {name: value for name, value in filters.items() if value is not None}
        with self._lock:
            out = []
            for record in self._messages:
                if all(_matches(record.get(name), value) for name, value in wanted.items()):
                    out.append(copy.deepcopy(record))
            return out

    def count(self) -> int:
        """How many messages are recorded (cheap, for polling)."""
        with self._lock:
            return len(self._messages)

    def rejected(self) -> list[Record]:
        """Copies of rejected requests, oldest first."""
        with self._lock:
            return copy.deepcopy(self._rejected)

    def notices(self) -> list[str]:
        """Recent page notes, newest first."""
        with self._lock:
            return list(self._notices)

    def get(self, key: str) -> Record | None:
        """A copy of one message by its unique key."""
        with self._lock:
            record = self._by_key.get(key)
            return copy.deepcopy(record) if record else None

    def find(self, message_id: str, *, to: str | None = None) -> Record | None:
        """A message by key or provider id (the newest if several share it, e.g. one SendGrid
        request to several recipients; `to` picks among them)."""
        with self._lock:
            record = self._by_key.get(message_id)
            if record is not None:
                return copy.deepcopy(record)
            for record in reversed(self._messages):
                if record.get("id") == message_id and (to is None or _matches(record["to"], to)):
                    return copy.deepcopy(record)
            return None

    def latest(self, *, customer: str, channel: str, direction: str) -> Record | None:
        """The newest message of one customer on one channel and direction."""
        key = customer_key(customer)
        with self._lock:
            for record in reversed(self._messages):
                if (
                    record["customer"] == key
                    and record["channel"] == channel
                    and record["direction"] == direction
                ):
                    return copy.deepcopy(record)
            return None


def _matches(actual: Any, wanted: str) -> bool:
    if actual == wanted:
        return True
    return isinstance(actual, str) and "@" in wanted and actual.lower() == wanted.lower()
