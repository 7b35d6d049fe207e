"""Experiments at launch: which recipients form the control group, which get which message
variant, and which wait for the winner, decided in SQL by the same INSERT … SELECT that
freezes the audience (and by one grouped query for the dry run).

Each contact gets a bucket in [0, BUCKETS) from an integer hash of the contact's id salted
with the broadcast's id (only + * %, no overflow: every product stays below 2**48, so the
same expression runs on PostgreSQL and SQLite and gives the same numbers). The buckets are
cut into consecutive ranges: the holdout share first (control), then the test share split
between the variants by their weights, then the rest (awaiting the winner). Without a test
share the variants split everything after the holdout. Deterministic: a second freeze or a
dry run of the same broadcast puts every contact in the same group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..models import Broadcast, BroadcastRecipient

R = BroadcastRecipient.State
BUCKETS = 10_000
PRIME = 2_147_483_647  # 2**31 - 1
MULTIPLIER = 48_271  # MINSTD's
CONTROL = "control"
AWAITING = "awaiting_winner"
CONTROL_REASON = "control group: held out, never sent"


def variant_keys(broadcast: Broadcast) -> list[str]:
    """The variants' keys (their template family slugs), in the broadcast's order."""
    return [v["template_slug"] for v in variants_of(broadcast)]


def variants_of(broadcast: Broadcast) -> list[dict[str, Any]]:
    value = broadcast.variants if isinstance(broadcast.variants, list) else []
    return [v for v in value if isinstance(v, dict) and v.get("template_slug")]


def has_experiment(broadcast: Broadcast) -> bool:
    return bool(variants_of(broadcast)) or bool(broadcast.holdout_percent)


def tests_first(broadcast: Broadcast) -> bool:
    """A test-then-winner broadcast: variants, a test share and a delay."""
    return bool(
        len(variants_of(broadcast)) >= 2
        and broadcast.variant_test_percent
        and broadcast.winner_after_hours
    )


def bucket_sql(column: str, salt: int) -> str:
    """The bucket of the contact id in `column` (an SQL expression; `salt` is an int), for a
    statement executed with parameters (its modulo signs are written %%)."""
    salt = int(salt) * 7919 + 1
    x1 = f"(((CAST({column} AS BIGINT) + {salt}) %% {PRIME}) * {MULTIPLIER} %% {PRIME})"
    x2 = f"({x1} * ({x1} %% 65521 + 1) %% {PRIME})"
    return f"(({x2} * {MULTIPLIER} + {salt % PRIME}) %% {PRIME} %% {BUCKETS})"


def bucket_of(contact_id: int, salt: int) -> int:
    """The same hash in Python (tests check that both agree)."""
    salt = int(salt) * 7919 + 1
    x1 = ((contact_id + salt) % PRIME) * MULTIPLIER % PRIME
    x2 = x1 * (x1 % 65521 + 1) % PRIME
    return (x2 * MULTIPLIER + salt % PRIME) % PRIME % BUCKETS


@dataclass(frozen=True)
class Plan:
    control_end: int  # buckets below: control
    test_end: int  # buckets from here: awaiting the winner (BUCKETS: nobody)
    bounds: list[tuple[int, str]]  # (upper bound, variant key), ascending

    def group_of(self, bucket: int) -> str:
        """The group of a bucket, as the SQL below decides it (for tests and reasoning)."""
        if bucket < self.control_end:
            return CONTROL
        if bucket >= self.test_end:
            return AWAITING
        for bound, key in self.bounds:
            if bucket < bound:
                return key
        return ""


def plan(broadcast: Broadcast) -> Plan:
    control_end = min(max(int(broadcast.holdout_percent or 0), 0), 50) * BUCKETS // 100
    test_end = BUCKETS
    if tests_first(broadcast):
        test_end = control_end + int(broadcast.variant_test_percent) * BUCKETS // 100
    variants = variants_of(broadcast)
    total = sum(int(v.get("weight") or 1) for v in variants)
    bounds, running = [], 0
    for v in variants:
        running += int(v.get("weight") or 1)
        bounds.append(
            (control_end + (test_end - control_end) * running // total, v["template_slug"])
        )
    return Plan(control_end=control_end, test_end=test_end, bounds=bounds)


def variant_case(p: Plan, bucket: str) -> tuple[str, list]:
    """CASE giving the variant key of a recipient ("" for control, awaiting, no variants)."""
    if not p.bounds:
        return "%s", [""]
    whens = [f"WHEN {bucket} < %s THEN %s"]
    params: list = [p.control_end, ""]
    for bound, key in p.bounds:
        whens.append(f"WHEN {bucket} < %s THEN %s")
        params += [min(bound, p.test_end), key]
    return f"(CASE {' '.join(whens)} ELSE %s END)", [*params, ""]


def state_case(p: Plan, bucket: str, state_sql: str, state_params: list) -> tuple[str, list]:
    """CASE over the freeze's own state (pending, or skipped when the local time passed):
    control first (the holdout is assigned whatever happens later), then skipped, then
    awaiting the winner."""
    sql = (
        f"(CASE WHEN {bucket} < %s THEN %s WHEN ({state_sql}) = %s THEN %s "
        f"WHEN {bucket} >= %s THEN %s ELSE ({state_sql}) END)"
    )
    params = [
        p.control_end,
        R.CONTROL.value,
        *state_params,
        R.SKIPPED.value,
        R.SKIPPED.value,
        p.test_end,
        R.AWAITING_WINNER.value,
        *state_params,
    ]
    return sql, params


def reason_case(p: Plan, bucket: str, reason_sql: str, reason_params: list) -> tuple[str, list]:
    return (
        f"(CASE WHEN {bucket} < %s THEN %s ELSE ({reason_sql}) END)",
        [p.control_end, CONTROL_REASON, *reason_params],
    )


def group_case(p: Plan, bucket: str) -> tuple[str, list]:
    """CASE naming a contact's group: "control", "awaiting_winner" or the variant key."""
    whens = [f"WHEN {bucket} < %s THEN %s", f"WHEN {bucket} >= %s THEN %s"]
    params: list = [p.control_end, CONTROL, p.test_end, AWAITING]
    for bound, key in p.bounds:
        whens.append(f"WHEN {bucket} < %s THEN %s")
        params += [bound, key]
    return f"(CASE {' '.join(whens)} ELSE %s END)", [*params, ""]
