"""Email HTML as it is sent: CSS from <style> blocks inlined into style attributes.

Many email clients (Gmail's apps, Outlook) drop or ignore <style>, so rules are moved onto
the elements with css-inline. The preview in admin and the sender both call
`inline_email_css`, so staff see exactly what customers get.
"""

from __future__ import annotations

import logging

import css_inline

logger = logging.getLogger(__name__)

_inliner = css_inline.CSSInliner(
    # @media rules cannot be inlined; keeping them lets clients that support them respond.
    keep_at_rules=True,
    # Staff-authored HTML must not make the server fetch URLs; <link> tags stay as written
    # for clients that load them.
    load_remote_stylesheets=False,
    keep_link_tags=True,
)


def inline_email_css(html: str) -> str:
    """`html` with its <style> rules inlined; unchanged if it has none or inlining fails."""
    if "<style" not in html.lower():
        # Nothing to inline: the HTML goes out exactly as written (a fragment stays a
        # fragment; the inliner would wrap it in <html><body>).
        return html
    try:
        return _inliner.inline(html)
    except (css_inline.InlineError, ValueError):
        # Sending the HTML as written beats failing the send over a stylesheet.
        logger.warning("Could not inline CSS of an email body; sending it as written.")
        return html
