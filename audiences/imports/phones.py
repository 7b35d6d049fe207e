"""Phone cells of an import: exactly what `channels_app.channels.normalize_phone` answers, at a
fraction of its cost for the common case (a number already in E.164).

`normalize_phone` parses with `phonenumbers` (generic parsing, ~20 µs) and checks validity
with `is_valid_number` (each number type of the region in turn, ~25 µs). For a cell that is
`+` and digits only, `normalize_phone` can only return the cell itself (its digits check
refuses any other reading), so all that matters is whether it would accept it. `e164_valid`
answers that with phonenumbers' own metadata — the same country-code split, the same region
choice and the same per-type patterns and lengths, compiled once per country code — and
answers True only where `normalize_phone` would return the cell unchanged. Whenever it cannot
be sure (a national prefix the parser might strip, a leading zero, an unknown code), it says
no and the cell goes through `normalize_phone` itself, which also writes every error message.
tests/audiences/test_import_phones.py checks the two agree on every region's example numbers
and their neighbours.
"""

from __future__ import annotations

import functools
import re

from django.core.exceptions import ValidationError
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata
from phonenumbers.phonenumberutil import REGION_CODE_FOR_NON_GEO_ENTITY

from channels_app.channels import normalize_phone

_E164 = re.compile(r"\+[1-9][0-9]{2,19}")  # ASCII digits only (\d would take any script's)
_MIN_NSN, _MAX_NSN = 2, 17  # phonenumbers' _MIN_LENGTH_FOR_NSN, _MAX_LENGTH_FOR_NSN
_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
)


def _desc(desc) -> str | None:
    """phonenumbers' _is_number_matching_desc(nsn, desc) as a regular expression that
    matches exactly the same (all-digit) strings; None when it never matches. The length
    check becomes a lookahead: (?=(?:[0-9]{8}|[0-9]{10})\\Z)."""
    if desc is None or not desc.national_number_pattern:
        return None
    pattern = f"(?:{desc.national_number_pattern})"
    if desc.possible_length:
        lengths = "|".join(f"[0-9]{{{n}}}" for n in sorted(set(desc.possible_length)) if n >= 0)
        if not lengths:
            return None  # possible_length (-1,): no length is possible
        pattern = f"(?=(?:{lengths})\\Z){pattern}"
    return pattern


class _Region:
    """One region's validity check: phonenumbers' _number_type_helper(nsn) != UNKNOWN, i.e.
    the general description matches and so does one of the number types (mobile only when
    its pattern differs from fixed line's, as there) — one regular expression, fullmatched:
    the general description as a lookahead, then the types as alternatives."""

    def __init__(self, metadata) -> None:
        general = _desc(metadata.general_desc)
        names = _TYPES if metadata.same_mobile_and_fixed_line_pattern else (*_TYPES, "mobile")
        types = [d for d in (_desc(getattr(metadata, name)) for name in names) if d]
        self.check = (
            re.compile(f"(?=(?:{general})\\Z)(?:{'|'.join(types)})") if general and types else None
        )
        leading = metadata.leading_digits
        self.leading = re.compile(leading) if leading is not None else None

    def valid(self, nsn: str) -> bool:
        return self.check is not None and self.check.fullmatch(nsn) is not None


class _Country:
    """What parse + is_valid_number do with `+<code><nsn>` for one country calling code."""

    def __init__(self, code: int) -> None:
        regions = COUNTRY_CODE_TO_REGION_CODE[code]
        # parse() reads the national prefix with the main region's metadata.
        main = _metadata(code, regions[0])
        prefix = main.national_prefix_for_parsing if main is not None else None
        self.strip = re.compile(prefix) if prefix else None
        self.single = len(regions) == 1
        # (the region's check or None without metadata, whether its calling code is this one)
        self.regions: list[tuple[_Region | None, bool]] = []
        for region in regions:
            metadata = _metadata(code, region)
            self.regions.append(
                (None, False)
                if metadata is None
                else (
                    _Region(metadata),
                    region == REGION_CODE_FOR_NON_GEO_ENTITY or metadata.country_code == code,
                )
            )

    def valid(self, nsn: str) -> bool:
        if self.single:
            check, same_code = self.regions[0]
            return check is not None and same_code and check.valid(nsn)
        # region_code_for_number: the first region whose leading digits match, or (without
        # leading digits) for which the number is valid; then is_valid_number_for_region.
        for check, same_code in self.regions:
            if check is None:
                continue
            if check.leading is not None:
                if check.leading.match(nsn):
                    return same_code and check.valid(nsn)
            elif check.valid(nsn):
                return same_code
        return False


def _metadata(code: int, region: str):
    if region == REGION_CODE_FOR_NON_GEO_ENTITY:
        return PhoneMetadata.metadata_for_nongeo_region(code, None)
    return PhoneMetadata.metadata_for_region(region, None)


@functools.cache
def _country(code: int) -> _Country:
    return _Country(code)


def e164_valid(raw: str) -> bool:
    """True only if `normalize_phone(raw)` returns `raw` unchanged; False when it would not,
    or when this check cannot tell (then ask normalize_phone)."""
    if not _E164.fullmatch(raw):
        return False
    digits = raw[1:]
    for size in (1, 2, 3):  # phonenumbers' _extract_country_code: the shortest known code
        code = int(digits[:size])
        if code in COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return False
    nsn = digits[size:]
    if not (_MIN_NSN <= len(nsn) <= _MAX_NSN) or nsn[0] == "0":
        return False  # too short/long, or a leading zero (Italy): leave it to phonenumbers
    country = _country(code)
    if country.strip is not None and country.strip.match(nsn):
        return False  # parse() might read a national prefix or carrier code off it
    return country.valid(nsn)


@functools.lru_cache(maxsize=65536)
def _normalized(raw: str) -> tuple[str, str]:
    """(E.164, "") or ("", the error message): normalize_phone's answer, kept for repeats."""
    try:
        return normalize_phone(raw), ""
    except ValidationError as exc:
        return "", " ".join(exc.messages)


def phone_cell(raw: str) -> tuple[str, str]:
    """A stripped phone cell as E.164, or the reason it is refused: (value, "") / ("", why)."""
    if e164_valid(raw):
        return raw, ""
    return _normalized(raw)
