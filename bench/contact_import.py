"""8. Contact import: rows/s of `import_run` (the real service: CSV streamed from disk,
cells parsed and checked, phones normalised with phonenumbers, rows matched by external id /
email / phone, set-based writes per batch with a checkpoint each) vs a bare `COPY` of the
same rows, already clean, into messaging_contact, on the same database.

Each run starts from an empty contacts table. The file has N rows of external_id, email,
phone, first and last name, time zone and two typed attributes. Also printed (notes): the
validation pass's rate, and a re-run of the same file (every row unchanged, nothing written).

Goal (issue 13): >= 0.3x the rate of the bare COPY. N: BENCH_IMPORT_ROWS, else 100k scaled by
BENCH_SCALE (at least 5,000).
"""

from __future__ import annotations

import json
import os
import time

from bench import common as c

ROWS = int(os.environ.get("BENCH_IMPORT_ROWS", "0")) or c.scaled(100_000, 5_000)
ZONES = ("Asia/Jakarta", "Europe/Paris", "UTC", "America/New_York")
PLANS = ("pro", "team", "free")
HEADER = (
    "external_id,email,phone,first_name,last_name,timezone,attributes.plan,"
    "attributes.orders:number\n"
)


def row(n: int) -> tuple:
    return (
        f"imp-{n}",
        f"customer{n}@example.com",
        f"+1415{2000000 + n:07d}",
        "Ada",
        f"Lovelace {n}",
        ZONES[n % 4],
        PLANS[n % 3],
        n % 17,
    )


def write_file() -> str:
    path = c.DATA_DIR / f"contact-import-{ROWS}.csv"
    with path.open("w") as out:
        out.write(HEADER)
        for n in range(ROWS):
            out.write(",".join(str(v) for v in row(n)) + "\n")
    return str(path)


def empty_contacts() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("TRUNCATE messaging_contact CASCADE")


def bare_copy(conn) -> float:
    """Seconds for a COPY of the same rows (clean values, as the import stores them)."""
    with conn.cursor() as cur:
        started = time.perf_counter()
        with cur.copy(
            "COPY messaging_contact (external_id, email, phone, whatsapp, first_name, last_name, "
            "locale, timezone, preferred_channel, attributes, created_via, email_undeliverable, "
            "phone_invalid, whatsapp_invalid, is_test, created_at, updated_at) FROM STDIN"
        ) as copy:
            for n in range(ROWS):
                ext, email, phone, first, last, zone, plan, orders = row(n)
                copy.write_row(
                    (
                        ext,
                        email,
                        phone,
                        "",
                        first,
                        last,
                        "",
                        zone,
                        "",
                        json.dumps({"plan": plan, "orders": orders}),
                        "import",
                        False,
                        False,
                        False,
                        False,
                        "now",
                        "now",
                    )
                )
        conn.commit()
        return time.perf_counter() - started


def main() -> None:
    c.django_setup(DJANGO_SETTINGS_MODULE="bench.settings")
    from django.conf import settings

    c.header("8. Contact import", rows=f"{ROWS:,}", batch=f"{settings.IMPORT_BATCH_SIZE:,} rows")
    with c.bench_services():
        from django.core.files import File

        from audiences.import_models import ContactImport
        from audiences.imports import import_create, import_run, import_transition, import_validate
        from messaging.models import Contact

        path = write_file()
        conn = c.pg_connect()

        def new_import() -> ContactImport:
            with open(path, "rb") as source:
                return import_create(file=File(source, name="bench.csv"))

        def run(contact_import: ContactImport) -> float:
            import_transition(contact_import=contact_import, to=ContactImport.Status.QUEUED)
            started = time.perf_counter()
            import_run(contact_import=contact_import)
            seconds = time.perf_counter() - started
            contact_import.refresh_from_db()
            assert contact_import.status == "completed", contact_import.failure
            return seconds

        product, baseline, validate_s, rerun_s = [], [], [], []
        for _ in range(c.RUNS):
            empty_contacts()
            baseline.append(ROWS / bare_copy(conn))
            assert Contact.objects.count() == ROWS
            empty_contacts()
            contact_import = new_import()
            import_transition(contact_import=contact_import, to=ContactImport.Status.VALIDATING)
            seconds, _ = c.timed(lambda ci=contact_import: import_validate(contact_import=ci))
            validate_s.append(seconds)
            contact_import.refresh_from_db()
            product.append(ROWS / run(contact_import))
            assert Contact.objects.count() == ROWS
            assert contact_import.created_count == ROWS
            again = new_import()
            import_transition(contact_import=again, to=ContactImport.Status.VALIDATING)
            import_validate(contact_import=again)
            again.refresh_from_db()
            rerun_s.append(run(again))
            again.refresh_from_db()
            assert again.unchanged_count == ROWS, "a re-run changed rows"
        conn.close()
        c.report(
            c.Figure(
                "contact_import",
                "import_run (CSV -> contacts, batches + checkpoints)",
                "rows/s",
                product,
                "bare COPY of the same rows",
                baseline,
                goal=">= 0.3",
                notes={
                    "rows": ROWS,
                    "validation pass rows/s": c.fmt(ROWS / c.median(validate_s)),
                    "re-run of the same file rows/s (nothing written)": c.fmt(
                        ROWS / c.median(rerun_s)
                    ),
                },
            )
        )


if __name__ == "__main__":
    main()
