"""Hosted-page plumbing for the fakes: an HTML page, a card form with its cancel form, and the
auto-submitting form a gateway's page uses to post the result back to the merchant.

Each fake keeps its own page content (fields, labels, amounts); only the markup around it is
shared here.
"""

from __future__ import annotations

import html

from tests.fakes.base import Answer

HTML = "text/html; charset=utf-8"


def page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><title>{html.escape(title)}</title></head>"
        f"<body>{body}</body></html>"
    )


def page_answer(title: str, body: str, status: int = 200) -> Answer:
    return Answer(status, page(title, body), HTML)


def error_notice(error: str) -> str:
    return f'<p class="error">{html.escape(error)}</p>' if error else ""


def hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'


def card_forms(base: str, session: str, inputs: str, *, cancel: str = "Cancel") -> str:
    """The card form (posted to ``base``/submit) and the cancel form (``base``/cancel), each
    carrying the page's session token."""
    token = hidden("session", session)
    return (
        f'<form method="post" action="{base}/submit">{token}{inputs}'
        '<button type="submit">Pay</button></form>'
        f'<form method="post" action="{base}/cancel">{token}'
        f'<button type="submit">{html.escape(cancel)}</button></form>'
    )


def auto_post(url: str, fields: dict[str, str], *, form_id: str, prefix: str = "") -> Answer:
    """A page that posts ``fields`` (names prefixed with ``prefix``) to ``url`` on load."""
    inputs = "".join(hidden(f"{prefix}{k}", v) for k, v in fields.items())
    return page_answer(
        "Redirecting",
        f'<form method="post" action="{html.escape(url)}" id="{form_id}">{inputs}</form>'
        f"<script>document.getElementById('{form_id}').submit()</script>",
    )
