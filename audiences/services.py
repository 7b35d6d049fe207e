"""Segment services: the only writers of segments and their membership. Everything is
set-based SQL; no code path here loops over contacts in Python."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from messaging.models import Contact

from .definition import definition_compile, definition_validate, empty_definition_for
from .dirty import contacts_mark_changed_in_transaction
from .models import Segment, SegmentMembership, SegmentMembershipChange, SegmentSize


class SegmentInUse(Exception):
    """Another segment's definition includes this one."""


def segment_members(*, segment: Segment, now: dt.datetime | None = None) -> QuerySet[Contact]:
    """The contacts in `segment` now: a dynamic segment's definition evaluated live (one
    query), a static segment's list. Erased contacts are never members."""
    contacts = Contact.objects.filter(erased_at__isnull=True)
    if segment.kind == Segment.Kind.STATIC:
        return contacts.filter(pk__in=segment.memberships.values("contact_id"))
    q = definition_compile(segment.definition, now=now or timezone.now(), slug=segment.slug)
    return contacts.filter(q)


def segment_count(*, segment: Segment, now: dt.datetime | None = None) -> int:
    return segment_members(segment=segment, now=now).order_by().count()


def _others(slug: str | None) -> dict[str, Any]:
    return dict(Segment.objects.exclude(slug=slug or "").values_list("slug", "definition"))


def segment_validate(*, definition: Any, kind: str, slug: str | None) -> None:
    """DefinitionError with field-level errors unless `definition` fits a segment `slug`."""
    if kind == Segment.Kind.STATIC:
        if definition not in (None, {}, {"all": []}):
            from .definition import DefinitionError

            raise DefinitionError({"": ["Static segments have no definition."]})
        return
    definition_validate(definition, slug=slug, others=_others(slug))


def segment_referrers(*, segment: Segment) -> list[str]:
    from .definition import definition_references

    return [
        slug
        for slug, definition in _others(segment.slug).items()
        if any(ref == segment.slug for _, ref in definition_references(definition))
    ]


@transaction.atomic
def segment_create(
    *, name: str, slug: str, kind: str, definition: Any = None, description: str = ""
) -> Segment:
    definition = definition if definition is not None else empty_definition_for(kind)
    segment_validate(definition=definition, kind=kind, slug=slug)
    return Segment.objects.create(
        name=name, slug=slug, kind=kind, definition=definition, description=description
    )


@transaction.atomic
def segment_update(*, segment: Segment, data: dict[str, Any]) -> Segment:
    """Name, description and definition; slug and kind are fixed once created (other
    segments and, later, journeys refer to the slug)."""
    if "definition" in data:
        segment_validate(definition=data["definition"], kind=segment.kind, slug=segment.slug)
    for field in ("name", "description", "definition"):
        if field in data:
            setattr(segment, field, data[field])
    segment.save()
    return segment


@transaction.atomic
def segment_delete(*, segment: Segment) -> None:
    referrers = segment_referrers(segment=segment)
    if referrers:
        raise SegmentInUse(f"Used by the segments: {', '.join(sorted(referrers))}.")
    segment.delete()


# --- Membership ----------------------------------------------------------------------------


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def membership_apply(
    *,
    segment: Segment,
    matching: QuerySet[Contact],
    now: dt.datetime,
    remove: bool,
    scope: list[int] | None = None,
) -> tuple[int, int]:
    """Make the membership table agree with `matching` (a queryset of contacts): insert who
    is new, delete who is gone (if `remove`), and log both, in set-based statements. With
    `scope` (contact ids) only those contacts are considered: `matching` is narrowed to them
    and only their memberships can be removed. Returns (entered, left)."""
    if scope is not None:
        if not scope:
            return 0, 0
        matching = matching.filter(pk__in=scope)
    sql, params = matching.order_by().values("id").query.sql_with_params()
    m, h = _table(SegmentMembership), _table(SegmentMembershipChange)
    seg = segment.pk
    # Only "%s" placeholders are formatted in for the scope; the ids are parameters.
    in_scope = f" AND contact_id IN ({', '.join(['%s'] * len(scope))})" if scope else ""
    scope_params = list(scope or [])
    # (S608: only table names and Django's own compiled SQL are formatted in; every value
    # is a parameter.)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One statement: every part sees the same snapshot, so the log and the table
            # agree even while contacts change under a READ COMMITTED recompute.
            gone = (
                f"gone AS (DELETE FROM {m} WHERE segment_id = %s{in_scope} AND contact_id NOT IN "  # noqa: S608
                f"(SELECT id FROM matching) RETURNING contact_id), "
                if remove
                else ""
            )
            left = "UNION ALL SELECT %s, contact_id, 'left', %s FROM gone" if remove else ""
            cursor.execute(
                f"WITH matching AS MATERIALIZED ({sql}), {gone}"  # noqa: S608
                f"new AS (INSERT INTO {m} (segment_id, contact_id, entered_at) "
                f"SELECT %s, id, %s FROM matching ON CONFLICT (segment_id, contact_id) "
                f"DO NOTHING RETURNING contact_id), "
                f"logged AS (INSERT INTO {h} (segment_id, contact_id, change, at) "
                f"SELECT %s, contact_id, 'entered', %s FROM new {left} RETURNING change) "
                f"SELECT COUNT(*) FILTER (WHERE change = 'entered'), "
                f"COUNT(*) FILTER (WHERE change = 'left') FROM logged",
                [
                    *params,
                    *([seg, *scope_params] if remove else []),
                    seg,
                    now,
                    seg,
                    now,
                    *([seg, now] if remove else []),
                ],
            )
            entered, gone_count = cursor.fetchone()
            return entered, gone_count
        # SQLite: one writer at a time (transaction_mode=IMMEDIATE holds the write lock for
        # the whole transaction), so the four statements see the same contacts.
        member = f"SELECT contact_id FROM {m} WHERE segment_id = %s"  # noqa: S608
        gone_count = 0
        if remove:
            cursor.execute(
                f"INSERT INTO {h} (segment_id, contact_id, change, at) SELECT %s, contact_id, "  # noqa: S608
                f"'left', %s FROM {m} WHERE segment_id = %s{in_scope} AND contact_id NOT IN "
                f"({sql})",
                [seg, now, seg, *scope_params, *params],
            )
            gone_count = cursor.rowcount
            cursor.execute(
                f"DELETE FROM {m} WHERE segment_id = %s{in_scope} AND contact_id NOT IN ({sql})",  # noqa: S608
                [seg, *scope_params, *params],
            )
        cursor.execute(
            f"INSERT INTO {h} (segment_id, contact_id, change, at) SELECT %s, id, 'entered', "  # noqa: S608
            f"%s FROM ({sql}) AS matching WHERE id NOT IN ({member})",
            [seg, now, *params, seg],
        )
        entered = cursor.rowcount
        cursor.execute(
            f"INSERT INTO {m} (segment_id, contact_id, entered_at) SELECT %s, id, %s "  # noqa: S608
            f"FROM ({sql}) AS matching WHERE id NOT IN ({member})",
            [seg, now, *params, seg],
        )
        return entered, gone_count


def _store_count(segment: Segment, now: dt.datetime, *, computed: bool) -> None:
    counted = (
        SegmentMembership.objects.filter(segment=OuterRef("pk"))
        .order_by()
        .values("segment")
        .annotate(n=Count("pk"))
        .values("n")
    )
    fields: dict[str, Any] = {"member_count": Coalesce(Subquery(counted), Value(0))}
    if computed:
        fields["last_computed_at"] = now
    Segment.objects.filter(pk=segment.pk).update(**fields)


@transaction.atomic
def segment_recompute(*, segment: Segment, now: dt.datetime) -> Segment:
    """Bring a dynamic segment's membership up to date, logging who entered and left.
    A fixed number of statements, whatever the number of contacts."""
    if segment.kind != Segment.Kind.DYNAMIC:
        raise ValueError("static segments are never recomputed")
    # One recompute of a segment at a time; a second waits and then finds nothing to do.
    segment = Segment.objects.select_for_update().get(pk=segment.pk)
    membership_apply(
        segment=segment, matching=segment_members(segment=segment, now=now), now=now, remove=True
    )
    _store_count(segment, now, computed=True)
    segment.refresh_from_db(fields=["member_count", "last_computed_at"])
    segment_sizes_record(sizes={segment.pk: segment.member_count}, now=now)
    return segment


@transaction.atomic
def static_segment_add(*, segment: Segment, contacts: QuerySet[Contact], now: dt.datetime) -> int:
    """Add `contacts` to a static segment (those already in it stay as they are)."""
    if segment.kind != Segment.Kind.STATIC:
        raise ValueError("only static segments take contacts by hand")
    segment = Segment.objects.select_for_update().get(pk=segment.pk)
    before = segment.memberships.count()
    membership_apply(
        segment=segment,
        matching=contacts.filter(erased_at__isnull=True),
        now=now,
        remove=False,
    )
    _store_count(segment, now, computed=False)
    segment.refresh_from_db(fields=["member_count"])
    segment_sizes_record(sizes={segment.pk: segment.member_count}, now=now)
    # Segments that include this one may now match these contacts.
    contacts_mark_changed_in_transaction(contacts.values("pk"))
    return segment.member_count - before


def segment_sizes_record(*, sizes: dict[int, int], now: dt.datetime) -> None:
    """Store member counts (segment id → count) as this hour's size: one statement."""
    if not sizes:
        return
    hour = now.replace(minute=0, second=0, microsecond=0)
    SegmentSize.objects.bulk_create(
        [SegmentSize(segment_id=pk, at=hour, member_count=n) for pk, n in sizes.items()],
        update_conflicts=True,
        unique_fields=["segment", "at"],
        update_fields=["member_count"],
    )


def segments_recompute_all(*, now: dt.datetime) -> int:
    """Recompute every dynamic segment (each in its own transaction)."""
    done = 0
    for segment in Segment.objects.filter(kind=Segment.Kind.DYNAMIC).order_by("pk"):
        segment_recompute(segment=segment, now=now)
        done += 1
    return done
