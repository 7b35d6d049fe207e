"""Journey experiments: which split variant a contact takes and who is held out.

Both are a hash of stable names (the journey's slug, the step's key) and the contact id, not
a random draw: the same contact always lands in the same variant and the same group, on every
enrollment and on every version of the journey, and nothing has to be stored to know it.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

MIN_VARIANTS = 2
MAX_VARIANTS = 5
MAX_WEIGHT = 1000
MAX_HOLDOUT_PERCENT = 50
END = "end"
VARIANT_OUTCOME = "variant:"  # StepVisit.outcome of a split step: "variant:<key>"
_SLUG = re.compile(r"^[-a-zA-Z0-9_]{1,32}$")


def _hash(*parts: object) -> int:
    """A 64-bit integer from the parts (SHA-256: uniform, and the same on every machine)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def split_variant(
    *, journey_slug: str, step_key: str, contact_id: int, variants: list[dict[str, Any]]
) -> dict[str, Any]:
    """The variant this contact takes: a bucket in [0, total weight) picks the variant whose
    cumulative weight covers it."""
    weights = [max(int(v.get("weight") or 0), 0) for v in variants]
    total = sum(weights)
    if not variants or total <= 0:
        raise ValueError("a split needs variants with positive weights")
    bucket = _hash("split", journey_slug, step_key, contact_id) % total
    for variant, weight in zip(variants, weights, strict=True):
        if bucket < weight:
            return variant
        bucket -= weight
    raise AssertionError("unreachable: the buckets cover the total weight")


def in_holdout(*, journey_slug: str, contact_id: int, percent: int) -> bool:
    """Whether the contact is in the journey's control group (percent of 100 buckets)."""
    if percent <= 0:
        return False
    return _hash("holdout", journey_slug, contact_id) % 100 < percent


def variant_of(outcome: str) -> str:
    return outcome.removeprefix(VARIANT_OUTCOME) if outcome.startswith(VARIANT_OUTCOME) else ""


def variants_problems(variants: Any) -> list[str]:
    """What is wrong with a split's variants (not whether their gotos exist: the journey
    knows its steps)."""
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        return ["Variants must be a list of {key, weight, goto}."]
    problems = []
    if not MIN_VARIANTS <= len(variants) <= MAX_VARIANTS:
        problems.append(f"A split needs {MIN_VARIANTS} to {MAX_VARIANTS} variants.")
    keys = [str(v.get("key") or "") for v in variants]
    for variant, key in zip(variants, keys, strict=True):
        name = f"variant “{key}”" if key else "a variant"
        if not _SLUG.match(key):
            problems.append(
                f"Name {name} with letters, digits, - or _ (e.g. a, b, short-copy)."
                if key
                else "Every variant needs a key (e.g. a, b)."
            )
        weight = variant.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, int) or weight <= 0:
            problems.append(f"The weight of {name} must be a positive whole number.")
        elif weight > MAX_WEIGHT:
            problems.append(f"The weight of {name} must be at most {MAX_WEIGHT}.")
        goto = variant.get("goto")
        if not isinstance(goto, str) or not goto:
            problems.append(f"Say which step {name} goes to (a step key or “end”).")
    duplicates = sorted({k for k in keys if k and keys.count(k) > 1})
    problems.extend(f"Two variants are called “{k}”." for k in duplicates)
    return problems
