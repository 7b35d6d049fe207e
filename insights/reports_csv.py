"""Every report as CSV: a header row, one line per report row, streamed. A text cell that a
spreadsheet would run as a formula (starting with = + - @, a tab or a carriage return, after
any spaces) gets a leading apostrophe; numbers are written as numbers."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from django.http import StreamingHttpResponse

from .reports import COUNTS, RATES

KEYS = {
    "step": ["journey", "step"],
    "broadcast": ["broadcast", "name"],
    "template": ["template", "template_channel"],
    "channel": ["channel"],
}
DROPOFF = ["step", "kind", "position", "entered", "lost", "lost_share"]
LINKS = [
    "url",
    "channel",
    "messages",
    "clicks",
    "unique_clickers",
    "messages_clicked",
    "click_rate",
    "bot_clicks",
]


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def report_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value.lstrip(" ").startswith(_FORMULA_START) else value
    return str(value)


class _Echo:
    def write(self, value: str) -> str:
        return value


def _currencies(report: dict[str, Any]) -> list[str]:
    found = {c for row in report["rows"] for c in row.get("revenue", {})}
    return sorted(found)


def _amount(value: str | None) -> Decimal | None:
    return Decimal(value) if value is not None else None


def report_table(report: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """(header, rows) of a report as the CSV and the staff page's tables show it."""
    if report["report"] == "links":
        return LINKS, [[row[c] for c in LINKS] for row in report["rows"]]
    currencies = _currencies(report)
    funnel = [*COUNTS, *RATES]
    money = [f"revenue_{c}" for c in currencies]
    if "steps" in report:  # a journey: every step, drop-off beside the funnel
        header = [*DROPOFF, *funnel, *money]
        rows = report["steps"]
    else:
        header = [*KEYS[report["report"]], *funnel, *money]
        rows = report["rows"]
    table = [
        [row.get(c, "") for c in header[: len(header) - len(money)]]
        + [_amount(row.get("revenue", {}).get(c)) for c in currencies]
        for row in rows
    ]
    return header, table


def report_csv_lines(report: dict[str, Any]) -> Iterator[str]:
    header, rows = report_table(report)
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([report_cell(v) for v in row])


def report_csv_response(*, report: dict[str, Any], name: str) -> StreamingHttpResponse:
    period = report["period"]
    response = StreamingHttpResponse(
        report_csv_lines(report), content_type="text/csv; charset=utf-8"
    )
    filename = f"report-{name}-{period['start']}-{period['end']}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response
