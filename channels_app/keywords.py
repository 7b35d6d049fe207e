"""Carrier-style keywords (STOP/START/HELP) in single-word SMS and WhatsApp replies."""

from __future__ import annotations

import unicodedata

STOP = "stop"
START = "start"
HELP = "help"

_KEYWORDS: dict[str, str] = {
    **dict.fromkeys(
        ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"), STOP
    ),
    **dict.fromkeys(("START", "YES", "UNSTOP"), START),
    **dict.fromkeys(("HELP", "INFO"), HELP),
}

# Punctuation, separators (incl. NBSP), controls and format characters such as zero-width
# spaces: phones and customers add these around a keyword without meaning anything by it.
_IGNORED_CATEGORIES = ("P", "Z", "Cc", "Cf")


def _ignorable(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith(_IGNORED_CATEGORIES)


def keyword_word(body: str) -> str:
    """The single word a body is, upper-cased, without what phones add around it ("" when it
    is not one ASCII word)."""
    # NFKC folds full-width letters, typed on some CJK keyboards, into ASCII.
    text = unicodedata.normalize("NFKC", body or "")
    start, end = 0, len(text)
    while start < end and _ignorable(text[start]):
        start += 1
    while end > start and _ignorable(text[end - 1]):
        end -= 1
    word = text[start:end]
    if not (word.isascii() and word.isalpha()):
        return ""
    return word.upper()


def classify_keyword(body: str) -> str:
    """Return "stop", "start", "help" or "" for a message body (a single word only)."""
    return _KEYWORDS.get(keyword_word(body), "")
