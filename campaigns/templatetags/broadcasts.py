"""`{% broadcasts_overview %}`: the latest broadcasts on the admin home (two queries)."""

from __future__ import annotations

from typing import Any

from django import template

from ..reports import broadcasts_overview

register = template.Library()


@register.inclusion_tag("admin/campaigns/overview.html", takes_context=True)
def broadcasts_overview_panel(context: dict[str, Any], limit: int = 8) -> dict[str, Any]:
    request = context.get("request")
    allowed = bool(request and request.user.has_perm("campaigns.view_broadcast"))
    return {"broadcasts": broadcasts_overview(limit=limit) if allowed else [], "allowed": allowed}
