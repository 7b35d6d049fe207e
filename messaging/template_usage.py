"""Who uses a template: checkers that apps above messaging register at start-up (journeys
registers its steps), so a template in use is not deleted and messaging imports nothing
upward (audiences/registry.py is the same pattern)."""

from __future__ import annotations

from collections.abc import Callable

# A checker answers, for a template's slug and channel, one line per user ("journey
# “post-purchase” step “thanks”"); empty when it uses nothing of that template.
TemplateUsageChecker = Callable[[str, str], list[str]]

CHECKERS: dict[str, TemplateUsageChecker] = {}


def register_template_usage(name: str, checker: TemplateUsageChecker) -> None:
    """Idempotent by `name` (AppConfig.ready may run twice in tests)."""
    CHECKERS[name] = checker


def template_users(*, slug: str, channel: str) -> list[str]:
    """Everything that uses the template `slug` on `channel`, from every registered checker."""
    users: list[str] = []
    for name in sorted(CHECKERS):
        users.extend(CHECKERS[name](slug, channel))
    return users
