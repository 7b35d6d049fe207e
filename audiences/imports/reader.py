"""Reading an import file as a stream: the header, then data rows in batches, never the
whole file in memory."""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator
from itertools import islice
from typing import IO, NamedTuple

# A cell longer than this is an error (csv raises), not a way to fill the memory.
csv.field_size_limit(1024 * 1024)


class FileError(ValueError):
    """The file cannot be read as a CSV (encoding, quoting, no header)."""


class Row(NamedTuple):  # a tuple: one is made per line of the file
    line: int  # line number in the file where the row ends (the header is line 1)
    cells: list[str]


@contextlib.contextmanager
def _text(binary: IO[bytes]) -> Iterator[io.TextIOWrapper]:
    # utf-8-sig: spreadsheets write a byte-order mark before the header. Detached after, so
    # the caller's file stays open (an uploaded file is read twice, then stored).
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
    try:
        yield text
    finally:
        with contextlib.suppress(Exception):
            text.detach()


def read_header(binary: IO[bytes]) -> list[str]:
    """The header row's column names (stripped); FileError if there is none."""
    with _text(binary) as text:
        try:
            header = next(csv.reader(text), None)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise FileError(f"Line 1: {_why(exc)}") from None
    if not header or not any(cell.strip() for cell in header):
        raise FileError("The file is empty or its first line is not a header row.")
    return [cell.strip() for cell in header]


def count_rows(binary: IO[bytes]) -> int:
    """Data rows in the file (blank lines are not rows)."""
    with _text(binary) as text:
        reader = csv.reader(text)
        try:
            next(reader, None)
            return sum(1 for cells in reader if cells)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise FileError(f"Line {reader.line_num + 1}: {_why(exc)}") from None


def batches(binary: IO[bytes], *, skip: int, size: int) -> Iterator[list[Row]]:
    """Data rows in lists of at most `size`, after the first `skip` data rows."""
    with _text(binary) as text:
        reader = csv.reader(text)
        try:
            next(reader, None)
            rows = (Row(reader.line_num, cells) for cells in reader if cells)
            if skip:
                next(islice(rows, skip - 1, skip), None)
            while True:
                batch = list(islice(rows, size))
                if not batch:
                    return
                yield batch
        except (csv.Error, UnicodeDecodeError) as exc:
            raise FileError(f"Line {reader.line_num + 1}: {_why(exc)}") from None


def _why(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "the file is not UTF-8 text (save it as “CSV UTF-8”)."
    return f"not valid CSV ({exc})."
