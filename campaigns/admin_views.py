"""The broadcast admin's own pages: review (dry run, test send, launch), pause / resume /
cancel confirmations and the report. Each view checks its permission itself and records what
it did in the audit log; a refusal changes nothing and sends nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone

from audit.services import audit_record

from . import services
from .dryrun import REASONS, broadcast_dry_run
from .errors import BroadcastError
from .experiment_report import experiment_report
from .forms import ConfirmForm, LaunchForm
from .models import Broadcast
from .permissions import LAUNCH_PERMISSION, TRANSACTIONAL_PERMISSION, TRANSACTIONAL_REFUSAL
from .reports import broadcast_activity, broadcast_report
from .staff_sends import broadcast_test_send

if TYPE_CHECKING:
    from .admin import BroadcastAdmin

TEST_PERMISSION = "messaging.send_test_message"

CONFIRMATIONS = {
    "pause": (
        "Pause",
        "Recipients not sent yet wait; messages already queued still go out. Resume later.",
    ),
    "resume": ("Resume", "Sending continues with the recipients not sent yet."),
    "cancel": (
        "Cancel",
        "Recipients not sent yet will never be sent. A cancelled broadcast cannot be resumed "
        "or launched again.",
    ),
}


class Refused(Exception):
    """A service refused (BroadcastError): shown to the user, nothing saved."""

    def __init__(self, error: BroadcastError) -> None:
        super().__init__(str(error))
        self.error = error


def _messages_of(error: BroadcastError) -> list[str]:
    return [f"{name}: {m}" if name else m for name, ms in error.errors.items() for m in ms]


def _services_call(action: str) -> Callable[..., Any]:
    # The sending engine (campaigns.services) owns launch / pause / resume / cancel.
    return getattr(services, f"broadcast_{action}")


def _label(counts: dict[str, int]) -> list[tuple[int, str]]:
    return [(n, REASONS.get(code, code)) for code, n in counts.items()]


def _labelled(dry_run: dict[str, Any]) -> dict[str, Any]:
    """The dry run with its reason codes in words, for the page."""
    for row in dry_run["channels"]:
        row["held_labelled"] = _label(row["held_reasons"])
        row["skipped_labelled"] = _label(row["skipped_reasons"])
    dry_run["skipped_labelled"] = _label(dry_run["skipped_reasons"])
    return dry_run


class BroadcastViews:
    def __init__(self, model_admin: BroadcastAdmin) -> None:
        self.model_admin = model_admin

    # --- helpers --------------------------------------------------------------------------

    def _context(self, request: HttpRequest, broadcast: Broadcast, title: str) -> dict:
        return {
            **self.model_admin.admin_site.each_context(request),
            "opts": Broadcast._meta,
            "original": broadcast,
            "broadcast": broadcast,
            "title": title,
        }

    def _viewable(self, request: HttpRequest, pk: int) -> Broadcast:
        broadcast = get_object_or_404(Broadcast, pk=pk)
        if not self.model_admin.has_view_permission(request, broadcast):
            raise PermissionDenied
        return broadcast

    def _launcher(self, request: HttpRequest, pk: int) -> Broadcast:
        broadcast = self._viewable(request, pk)
        if not request.user.has_perm(LAUNCH_PERMISSION):
            raise PermissionDenied
        return broadcast

    def _change_url(self, broadcast: Broadcast) -> str:
        return reverse("admin:campaigns_broadcast_change", args=[broadcast.pk])

    def _act(self, request: HttpRequest, broadcast: Broadcast, action: str) -> bool:
        """Run the service for `action` (it records the audit entry, with the user as actor);
        False, with the reasons shown, if refused."""
        try:
            _services_call(action)(broadcast=broadcast, actor=request.user, now=timezone.now())
            broadcast.refresh_from_db()
        except BroadcastError as exc:
            for message in _messages_of(exc):
                self.model_admin.message_user(request, message, messages.ERROR)
            return False
        return True

    # --- review and launch ----------------------------------------------------------------

    def _review_page(
        self, request: HttpRequest, broadcast: Broadcast, form: LaunchForm | None = None
    ) -> HttpResponse:
        can_launch = request.user.has_perm(LAUNCH_PERMISSION)
        context = {
            **self._context(request, broadcast, f"Review: {broadcast}"),
            "dry_run": _labelled(broadcast_dry_run(broadcast=broadcast, now=timezone.now())),
            "segments": list(broadcast.segments.all()),
            "exclude_segments": list(broadcast.exclude_segments.all()),
            "can_launch": can_launch and broadcast.status == Broadcast.Status.DRAFT,
            "can_send_test": request.user.has_perm(TEST_PERMISSION),
            "launch_form": form or LaunchForm(broadcast=broadcast),
        }
        return render(request, "admin/campaigns/broadcast/review.html", context)

    def review(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The dry run, per-channel audience sizes, test send and launch confirmation."""
        return self._review_page(request, self._viewable(request, pk))

    def launch(self, request: HttpRequest, pk: int) -> HttpResponse:
        broadcast = self._launcher(request, pk)
        if request.method != "POST":
            return HttpResponseRedirect(
                reverse("admin:campaigns_broadcast_review", args=[broadcast.pk])
            )
        form = LaunchForm(request.POST, broadcast=broadcast)
        if broadcast.status != Broadcast.Status.DRAFT:
            # Only a draft launches (a second freeze would add who joined the segments since).
            form.add_error(None, f"{broadcast} is {broadcast.get_status_display().lower()}.")
        if not form.is_valid():
            return self._review_page(request, broadcast, form)
        if broadcast.category == Broadcast.Category.TRANSACTIONAL and not request.user.has_perm(
            TRANSACTIONAL_PERMISSION
        ):
            self.model_admin.message_user(request, TRANSACTIONAL_REFUSAL, messages.ERROR)
            return HttpResponseRedirect(reverse("admin:campaigns_broadcast_review", args=[pk]))
        if self._act(request, broadcast, "launch"):
            self.model_admin.message_user(
                request,
                f"{broadcast} launched: {broadcast.recipient_count} recipient(s), "
                f"{broadcast.get_status_display().lower()}.",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(self._change_url(broadcast))
        return HttpResponseRedirect(reverse("admin:campaigns_broadcast_review", args=[pk]))

    def send_test(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Send the broadcast's message to the signed-in user's own test contacts."""
        broadcast = self._viewable(request, pk)
        if not request.user.has_perm(TEST_PERMISSION):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:campaigns_broadcast_review", args=[pk]))
        result = broadcast_test_send(broadcast=broadcast, user=request.user)
        if result.messages:
            audit_record(
                actor=request.user,
                action="send_test",
                target=broadcast,
                request=request,
                details={
                    "channels": [m.channel for m in result.messages],
                    "messages": [str(m.pk) for m in result.messages],
                },
            )
            sent = ", ".join(f"{m.channel} to {m.contact}" for m in result.messages)
            self.model_admin.message_user(request, f"Test sent: {sent}.", messages.SUCCESS)
        for problem in result.problems:
            self.model_admin.message_user(request, problem, messages.WARNING)
        return HttpResponseRedirect(reverse("admin:campaigns_broadcast_review", args=[pk]))

    # --- pause / resume / cancel -----------------------------------------------------------

    def _confirm(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        broadcast = self._launcher(request, pk)
        verb, explanation = CONFIRMATIONS[action]
        form = ConfirmForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            if self._act(request, broadcast, action):
                self.model_admin.message_user(
                    request, f"{broadcast}: {broadcast.get_status_display().lower()}."
                )
            return HttpResponseRedirect(self._change_url(broadcast))
        context = {
            **self._context(request, broadcast, f"{verb} {broadcast}?"),
            "verb": verb,
            "explanation": explanation,
            "form": form,
        }
        return render(request, "admin/campaigns/broadcast/confirm.html", context)

    def pause(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self._confirm(request, pk, "pause")

    def resume(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self._confirm(request, pk, "resume")

    def cancel(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self._confirm(request, pk, "cancel")

    # --- report ------------------------------------------------------------------------------

    def report(self, request: HttpRequest, pk: int) -> HttpResponse:
        broadcast = self._viewable(request, pk)
        context = {
            **self._context(request, broadcast, f"Report: {broadcast}"),
            "report": broadcast_report(broadcast=broadcast),
            "experiment": experiment_report(broadcast=broadcast),
            "report_data_url": reverse("admin:campaigns_broadcast_report_data", args=[pk]),
            "recipients_url": reverse("admin:campaigns_broadcastrecipient_changelist")
            + f"?broadcast__id__exact={pk}",
        }
        return render(request, "admin/campaigns/broadcast/report.html", context)

    def report_data(self, request: HttpRequest, pk: int) -> JsonResponse:
        broadcast = self._viewable(request, pk)
        return JsonResponse(
            {
                **broadcast_report(broadcast=broadcast),
                "activity": broadcast_activity(broadcast=broadcast),
                "experiment": experiment_report(broadcast=broadcast),
            }
        )
