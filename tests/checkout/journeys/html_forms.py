"""Reading a hosted page's HTML form as a browser does (for the journey drivers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin


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
