"""STOP/START/HELP keyword detection in single-word replies."""

from __future__ import annotations

import pytest

from channels_app.keywords import classify_keyword

STOP_WORDS = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"]
START_WORDS = ["START", "YES", "UNSTOP"]
HELP_WORDS = ["HELP", "INFO"]
CASES = (
    [(w, "stop") for w in STOP_WORDS]
    + [(w, "start") for w in START_WORDS]
    + [(w, "help") for w in HELP_WORDS]
)


@pytest.mark.parametrize(("word", "expected"), CASES)
@pytest.mark.parametrize(
    "variant",
    [
        lambda w: w,
        lambda w: w.lower(),
        lambda w: w.capitalize(),
        lambda w: f"  {w.capitalize()}. ",
        lambda w: f"{w}!",
        lambda w: f"\n{w.lower()}?!\r\n",
        lambda w: f'"{w}"',
        lambda w: f"\u200b{w}\u00a0",  # zero-width space, no-break space
        lambda w: "".join(chr(ord(c) + 0xFEE0) for c in w),  # full-width letters
    ],
    ids=["upper", "lower", "capital", "spaces-dot", "bang", "newlines", "quoted", "zw", "wide"],
)
def test_keywords_and_their_variants(word: str, expected: str, variant) -> None:
    assert classify_keyword(variant(word)) == expected


@pytest.mark.parametrize(
    "body",
    [
        "",
        "   ",
        "STOP please",
        "don't stop",
        "please stop",
        "stop stop",
        "STOP\nnow",
        "STOPP",
        "S T O P",
        "yes!!! thank you",
        "helpful",
        "info@example.com",
        "st0p",
        "opt out",
        "🛑",
        "Thanks, that was great",
    ],
)
def test_other_messages_are_not_keywords(body: str) -> None:
    assert classify_keyword(body) == ""


def test_none_is_tolerated() -> None:
    assert classify_keyword(None) == ""  # type: ignore[arg-type]
