"""The import's phone and email checks give exactly normalize_phone's and validate_email's
answers (value or error message), and take their fast path for ordinary values."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from django.core.exceptions import ValidationError
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from audiences.imports import phones
from audiences.imports.phones import e164_valid, phone_cell
from channels_app.channels import normalize_phone


def expected(raw: str) -> tuple[str, str]:
    try:
        return normalize_phone(raw), ""
    except ValidationError as exc:
        return "", " ".join(exc.messages)


def example_numbers() -> list[str]:
    """Every region's (and non-geographic code's) example number of every type, E.164."""
    numbers = set()
    for region in phonenumbers.SUPPORTED_REGIONS:
        for kind in PhoneNumberType.values():
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                numbers.add(phonenumbers.format_number(example, PhoneNumberFormat.E164))
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        example = phonenumbers.example_number_for_non_geo_entity(code)
        if example is not None:
            numbers.add(phonenumbers.format_number(example, PhoneNumberFormat.E164))
    return sorted(numbers)


def neighbours(number: str) -> list[str]:
    """Near misses: a digit changed at each place, one digit more and less, a 0 or 1 after
    the country code, the digits shifted."""
    digits = number[1:]
    out = [f"+{digits}{d}" for d in "059"] + [f"+{digits[:-1]}", f"+{digits[1:]}"]
    for place in range(len(digits)):
        for d in "0129":
            out.append(f"+{digits[:place]}{d}{digits[place + 1 :]}")
    for size in (1, 2, 3):
        out += [f"+{digits[:size]}0{digits[size:]}", f"+{digits[:size]}1{digits[size:]}"]
    return out


def test_agrees_with_normalize_phone_on_every_example_number_and_its_neighbours():
    examples = example_numbers()
    assert len(examples) > 1000
    checked = 0
    for number in examples:
        for raw in [number, *neighbours(number)]:
            fast = phone_cell(raw)
            assert fast == expected(raw), raw
            if e164_valid(raw):
                assert normalize_phone(raw) == raw, raw
            checked += 1
    assert checked > 50_000


def test_agrees_on_random_digit_strings():
    draw = random.Random(13)  # fixed seed: the same strings every run
    for _ in range(20_000):
        raw = "+" + "".join(draw.choice("0123456789") for _ in range(draw.randint(1, 19)))
        assert phone_cell(raw) == expected(raw), raw
        if e164_valid(raw):
            assert normalize_phone(raw) == raw, raw


def test_ordinary_numbers_take_the_fast_path():
    examples = example_numbers()
    fast = [n for n in examples if e164_valid(n)]
    valid = [n for n in examples if expected(n)[0] == n]
    # Only numbers whose national prefix the parser could strip, or with a leading zero,
    # go the slow way.
    assert len(fast) >= 0.8 * len(valid)
    for number in ("+14155552671", "+442079460000", "+33612345678", "+6281234567890"):
        assert e164_valid(number), number


@pytest.mark.parametrize(
    "raw",
    [
        "+1 (415) 555-2671",  # punctuation: normalised by phonenumbers
        "whatsapp:+14155552671",
        "+14155552671x",
        "+1415555267",  # too short for the US
        "+999123456",  # no such country code
        "+0123456",
        "+",
        "+12",
        "+39 06 1234 5678",  # Italy keeps its leading zero
        "+440201234567",  # national prefix after the code: refused by the digits check
        "+١٤١٥٥٥٥٢٦٧١",  # Arabic-Indic digits
        "0041 44 668 18 00",
    ],
)
def test_other_forms_give_normalize_phones_value_or_error(raw):
    assert phone_cell(raw) == expected(raw)
    assert not e164_valid(raw)


def test_repeated_cells_are_normalised_once(monkeypatch):
    phones._normalized.cache_clear()
    calls = []

    def counting(raw):
        calls.append(raw)
        return normalize_phone(raw)

    monkeypatch.setattr(phones, "normalize_phone", counting)
    for _ in range(3):
        assert phone_cell("+1 (415) 555-2672") == ("+14155552672", "")
        assert phone_cell("+1 415 555") == expected("+1 415 555")
    assert calls == ["+1 (415) 555-2672", "+1 415 555"]
    phones._normalized.cache_clear()


EMAILS = [
    "ada@example.com",
    "a.b+tag@sub.example.co.uk",
    "user@localhost",
    "user@[127.0.0.1]",
    "user@[IPv6:::1]",
    "user@[300.1.1.1]",
    "user@-example.com",
    "user@example",
    "user@example.c",
    "user@exa_mple.com",
    "user@xn--bcher-kva.example",
    'quoted"@example.com',
    '"quoted name"@example.com',
    "two@@example.com",
    "a@b@example.com",
    "@example.com",
    "user@",
    "plain",
    "",
    "user@" + "a" * 64 + ".com",
    "user@" + ".".join(["abc"] * 80) + ".com",
    "u" * 330 + "@example.com",
    "user@exämple.com",
    "üser@example.com",
    "user@example.com.",
    "user@.example.com",
    "user.@example.com",
]


@pytest.mark.parametrize("value", EMAILS)
def test_email_check_agrees_with_djangos_validate_email(value):
    from django.core.validators import validate_email

    from audiences.imports.mapping import email_ok

    try:
        validate_email(value)
        accepted = True
    except ValidationError:
        accepted = False
    assert email_ok(value) is accepted
    assert email_ok(value) is accepted  # the second time from the per-domain cache


def all_metadata() -> list:
    from phonenumbers import PhoneMetadata

    found = [PhoneMetadata.metadata_for_region(r, None) for r in phonenumbers.SUPPORTED_REGIONS]
    found += [
        PhoneMetadata.metadata_for_nongeo_region(code, None)
        for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS
    ]
    return [m for m in found if m is not None]


def test_each_regions_compiled_check_is_phonenumbers_number_type_helper():
    """Per region, on strings of every length 2-17 grown from its example numbers: the
    compiled check says valid exactly when _number_type_helper finds a type (this is where
    the possible lengths matter)."""
    import re

    from phonenumbers.phonenumberutil import _is_number_matching_desc, _number_type_helper

    draw = random.Random(17)
    compared = 0
    for metadata in all_metadata():
        region = phones._Region(metadata)
        descs = [
            metadata.general_desc,
            metadata.mobile,
            *(getattr(metadata, t) for t in phones._TYPES),
        ]
        seeds = {d.example_number for d in descs if d is not None and d.example_number}
        for seed in seeds:
            for size in range(2, 18):
                grown = (seed + "".join(draw.choice("0123456789") for _ in range(17)))[:size]
                for nsn in (grown, seed[:size]):
                    if len(nsn) < 2:
                        continue
                    expected_type = _number_type_helper(nsn, metadata)
                    assert region.valid(nsn) is (expected_type != PhoneNumberType.UNKNOWN), nsn
                    for desc in descs:
                        pattern = phones._desc(desc)
                        matches = pattern is not None and re.fullmatch(pattern, nsn) is not None
                        assert matches is _is_number_matching_desc(nsn, desc), (nsn, pattern)
                    compared += 1
    assert compared > 30_000
