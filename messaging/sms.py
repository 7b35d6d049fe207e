"""SMS segment counting: GSM-7 or UCS-2, characters and segments, as carriers bill them.

Hand-written: the PyPI candidates are unmaintained or a day old, and the rules fit on a page
(3GPP TS 23.038 for the alphabet, TS 23.040 for the 7-byte concatenation header that leaves
153 GSM-7 or 67 UCS-2 characters per part).
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7 = "GSM-7"
SMS_MAX_CHARACTERS = 1600  # message_create refuses longer rendered bodies
UCS2 = "UCS-2"

# The GSM 03.38 default alphabet, row by row (0x1B, the escape to the extension table, is
# left out: it is not a character anyone types).
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each is sent as ESC + char, so it costs two septets.
_GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

_LIMITS = {
    # encoding: (one-part limit, per-part limit once concatenated)
    GSM7: (160, 153),
    UCS2: (70, 67),
}


@dataclass(frozen=True)
class SmsInfo:
    """How a text goes out as SMS. `characters` counts what the limits count: septets for
    GSM-7 (extension characters are two), UTF-16 code units for UCS-2 (an emoji is two)."""

    encoding: str
    characters: int
    segments: int

    @property
    def per_segment(self) -> int:
        single, multi = _LIMITS[self.encoding]
        return single if self.segments <= 1 else multi


def is_gsm7(text: str) -> bool:
    """True when every character is in the GSM-7 default alphabet or its extension."""
    return all(ch in _GSM7_BASIC or ch in _GSM7_EXTENSION for ch in text)


def sms_segments(text: str) -> SmsInfo:
    """Encoding, character count and number of SMS segments for `text`."""
    if is_gsm7(text):
        encoding = GSM7
        units = [2 if ch in _GSM7_EXTENSION else 1 for ch in text]
    else:
        encoding = UCS2
        units = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    total = sum(units)
    single, multi = _LIMITS[encoding]
    if total == 0:
        return SmsInfo(encoding, 0, 0)
    if total <= single:
        return SmsInfo(encoding, total, 1)
    # Parts are packed whole characters at a time: an escape pair or a surrogate pair is never
    # split across two parts, so a part can hold one unit less than the limit.
    segments, used = 1, 0
    for size in units:
        if used + size > multi:
            segments, used = segments + 1, 0
        used += size
    return SmsInfo(encoding, total, segments)
