"""Reading an import file as a stream: the header, then data rows in batches, never the
whole file in memory."""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
from collections.abc import Iterator
from itertools import islice
from typing import IO, NamedTuple

from messaging.input_rules import text_problem

# Bounds on one row, so that no file can fill the web process's memory: csv's own limit
# caps each cell, not the number of cells, so the reader is fed lines read with a bounded
# readline and a record (a row, which quoted newlines may spread over several lines) longer
# than MAX_LINE_CHARS characters, or with more than MAX_COLUMNS cells, is a FileError
# (docs/IMPORT.md).
MAX_LINE_CHARS = 1024 * 1024
MAX_COLUMNS = 1000
csv.field_size_limit(MAX_LINE_CHARS)


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


class _TooLong(Exception):
    pass


class _Records:
    """csv.reader over lines read with a bounded readline: a record (one row, over one or
    more lines) longer than MAX_LINE_CHARS raises before csv builds its list of cells, and
    one with more than MAX_COLUMNS cells is refused after. Iterates cell lists."""

    def __init__(self, text: io.TextIOWrapper) -> None:
        self._text = text
        self.binary = text.buffer
        self._used = 0  # characters of the record being read
        self._reader = csv.reader(self._lines())

    def _lines(self) -> Iterator[str]:
        readline = self._text.readline
        while True:
            line = readline(MAX_LINE_CHARS + 1)
            if not line:
                return
            self._used += len(line)
            if self._used > MAX_LINE_CHARS:
                raise _TooLong
            yield line

    @property
    def line_num(self) -> int:
        return self._reader.line_num

    def __iter__(self) -> Iterator[list[str]]:
        return self

    def __next__(self) -> list[str]:
        self._used = 0
        cells = next(self._reader)
        if len(cells) > MAX_COLUMNS:
            raise FileError(
                f"Line {self.line_num}: {len(cells):,} cells; a row may have at most "
                f"{MAX_COLUMNS:,} columns."
            )
        return cells


def _failure(records: _Records, exc: Exception) -> FileError:
    if isinstance(exc, FileError):
        return exc
    line = records.line_num + 1
    if isinstance(exc, UnicodeDecodeError):
        # The text layer decodes ahead by whole chunks: find the line in the bytes.
        line = _undecodable_line(records.binary) or line
    return FileError(f"Line {line}: {_why(exc)}")


def _undecodable_line(binary: IO[bytes]) -> int | None:
    """The line of the first byte that is not UTF-8 (a second, streamed pass; errors only)."""
    try:
        binary.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        line = 1
        while chunk := binary.read(64 * 1024):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                return line + chunk.count(b"\n", 0, max(exc.start, 0))
            line += chunk.count(b"\n")
    except (OSError, ValueError):
        return None
    return None


READ_ERRORS = (csv.Error, UnicodeDecodeError, _TooLong, FileError)


def read_header(binary: IO[bytes]) -> list[str]:
    """The header row's column names (stripped); FileError if there is none, or if a name
    holds a NUL byte or a lone surrogate (the names are stored in JSONB)."""
    with _text(binary) as text:
        records = _Records(text)
        try:
            header = next(records, None)
        except READ_ERRORS as exc:
            raise _failure(records, exc) from None
    if not header or not any(cell.strip() for cell in header):
        raise FileError("The file is empty or its first line is not a header row.")
    for number, cell in enumerate(header, 1):
        problem = text_problem(cell)
        if problem:
            raise FileError(f"Line 1, column {number}: {problem}")
    return [cell.strip() for cell in header]


def count_rows(binary: IO[bytes]) -> int:
    """Data rows in the file (blank lines are not rows); reads the whole file, so a bad
    byte or row anywhere is a FileError naming its line."""
    with _text(binary) as text:
        records = _Records(text)
        try:
            next(records, None)
            return sum(1 for cells in records if cells)
        except READ_ERRORS as exc:
            raise _failure(records, exc) from None


def batches(binary: IO[bytes], *, skip: int, size: int) -> Iterator[list[Row]]:
    """Data rows in lists of at most `size`, after the first `skip` data rows."""
    with _text(binary) as text:
        reader = _Records(text)
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
        except READ_ERRORS as exc:
            raise _failure(reader, exc) from None


def _why(exc: Exception) -> str:
    if isinstance(exc, _TooLong):
        return f"a row is longer than {MAX_LINE_CHARS:,} characters."
    if isinstance(exc, UnicodeDecodeError):
        return "the file is not UTF-8 text (save it as “CSV UTF-8”)."
    return f"not valid CSV ({exc})."
