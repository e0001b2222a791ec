"""Reading a hosted page's HTML form as a browser does (for the journey drivers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import httpx

from tests.checkout.journeys import BrowserStep, CustomerAction


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)  # hidden and text inputs, as filled
    buttons: dict[str, list[str]] = field(default_factory=dict)  # submit name -> values


class _FormReader(HTMLParser):
    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url
        self.forms: list[Form] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(
                Form(
                    urljoin(self.base_url, values.get("action") or self.base_url),
                    (values.get("method") or "get").upper(),
                )
            )
        elif tag == "a" and values.get("href"):
            self.links.append(urljoin(self.base_url, values["href"]))
        elif self.forms and tag in ("input", "button"):
            name = values.get("name")
            if not name:
                return
            kind = values.get("type", "submit" if tag == "button" else "text").lower()
            if kind == "submit":
                self.forms[-1].buttons.setdefault(name, []).append(values.get("value", ""))
            else:
                self.forms[-1].fields[name] = values.get("value", "")


def read_forms(html: str, base_url: str) -> tuple[list[Form], list[str]]:
    """The page's forms and link targets, URLs made absolute against ``base_url``."""
    reader = _FormReader(base_url)
    reader.feed(html)
    return reader.forms, reader.links


def the_form(html: str, base_url: str) -> Form:
    forms, _ = read_forms(html, base_url)
    assert len(forms) == 1, f"expected one form on the page, found {len(forms)}"
    return forms[0]


# -- pages that post forms (PayU India, QPay): forms with button labels, and the browser -------


@dataclass
class HtmlForm:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[str] = field(default_factory=list)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[HtmlForm] = []
        self._button = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(HtmlForm(found.get("action", ""), found.get("method", "get").upper()))
        elif tag == "input" and self.forms and found.get("name"):
            self.forms[-1].fields[found["name"]] = found.get("value", "")
        elif tag == "button":
            self._button = True

    def handle_data(self, data: str) -> None:
        if self._button and self.forms and data.strip():
            self.forms[-1].buttons.append(data.strip())

    def handle_endtag(self, tag: str) -> None:
        if tag == "button":
            self._button = False


def forms(page: str, base_url: str) -> list[HtmlForm]:
    """Every form of an HTML page, actions made absolute against the page's URL."""
    parser = _FormParser()
    parser.feed(page)
    for form in parser.forms:
        form.action = urljoin(base_url, form.action)
    return parser.forms


def browser(step: BrowserStep) -> httpx.Response:
    """One browser request (forms form-encoded); redirects are not followed."""
    with httpx.Client(timeout=15, follow_redirects=False) as client:
        if step.method.upper() == "POST":
            return client.post(step.url, data=step.fields)
        return client.get(step.url, params=step.fields or None)


def submit(form: HtmlForm, **values: str) -> httpx.Response:
    return browser(BrowserStep(form.method, form.action, {**form.fields, **values}))


def auto_post(response: httpx.Response) -> BrowserStep | None:
    """The request an auto-submitting page makes (its only form), or None for a page without
    one (the payment is processing, or the customer was thanked and left)."""
    found = forms(response.text, str(response.url))
    if len(found) != 1 or "submit()" not in response.text:
        return None
    return BrowserStep(found[0].method, found[0].action, dict(found[0].fields))


class FormPostDriver:
    """What the drivers of pages that post forms share (PayU India, QPay): the page holds a card
    form and a cancel form; a decided payment answers with an auto-submitting form (the
    browser's return), a pending one with a "processed" page; a fake that holds the payer's
    return (``never_return``) thanks the payer instead."""

    def card(self, action: CustomerAction) -> dict[str, str]:
        """The card form's fields for ``action`` (success, decline or pending)."""
        raise NotImplementedError

    def act(self, at_gateway: BrowserStep, action: CustomerAction) -> httpx.Response:
        """Open the gateway's page and do ``action``: the gateway's answer to the browser."""
        opened = browser(at_gateway)
        assert opened.status_code == 200, opened.text
        card_form, cancel_form = forms(opened.text, str(opened.url))
        if action == "cancel":
            response = submit(cancel_form)
        else:
            response = submit(card_form, **self.card(action))
        assert response.status_code == 200, response.text
        return response

    def pay(self, fake: Any, at_gateway: BrowserStep, action: CustomerAction) -> BrowserStep | None:
        response = self.act(at_gateway, action)
        step = auto_post(response)
        if action == "pending":
            assert step is None and "processed" in response.text, response.text
        else:
            assert step is not None, response.text
        return step

    def pay_without_return(self, fake: Any, at_gateway: BrowserStep) -> None:
        fake.never_return = True
        try:
            response = self.act(at_gateway, "success")
            assert auto_post(response) is None and "successful" in response.text
        finally:
            fake.never_return = False
