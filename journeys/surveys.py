"""Understanding survey answers: an NPS score from "9", "nine", "10/10", or a choice."""

from __future__ import annotations

import re

_WORDS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}
# A whole number, not part of a decimal ("8." ending a sentence is 8; "8.5" is not a score).
_NUMBER = re.compile(r"(?<![\d.])(\d{1,2})(?:\s*(?:/|out\s+of|of)\s*10)?(?!\d|\.\d)", re.IGNORECASE)
_WORD = re.compile(r"\b(" + "|".join(_WORDS) + r")\b", re.IGNORECASE)


def parse_nps(text: str) -> int | None:
    """The 0–10 score in a reply, or None when there is none or it is ambiguous."""
    text = (text or "").strip()
    numbers = [int(n) for n in _NUMBER.findall(text) if 0 <= int(n) <= 10]
    words = [_WORDS[w.lower()] for w in _WORD.findall(text)]
    found = numbers or words
    if not found:
        return None
    if len(set(found)) > 1:
        return None  # "7 or 8?" is not an answer we should guess at
    return found[0]


def nps_category(score: int) -> str:
    if score >= 9:
        return "promoter"
    if score >= 7:
        return "passive"
    return "detractor"


def parse_choice(text: str, choices: list[str]) -> str | None:
    """A choice by its text (case-insensitive) or its 1-based number."""
    answer = (text or "").strip().strip(".!").lower()
    for choice in choices:
        if answer == choice.lower():
            return choice
    if answer.isdigit() and 1 <= int(answer) <= len(choices):
        return choices[int(answer) - 1]
    matches = [c for c in choices if re.search(rf"\b{re.escape(c.lower())}\b", answer)]
    return matches[0] if len(matches) == 1 else None


def nps_score(promoters: int, detractors: int, total: int) -> float | None:
    """Net Promoter Score: % promoters − % detractors, from −100 to 100."""
    if not total:
        return None
    return round(100.0 * (promoters - detractors) / total, 1)
