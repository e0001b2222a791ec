"""Which webhook targets may be called: http(s) only, and never loopback, private, link-local or
otherwise internal addresses unless PAYOPS_WEBHOOK_ALLOW_PRIVATE is set. The check runs on every
address the name resolves to, and the connection then goes to the checked address itself, so a
DNS answer that changes between check and connect cannot slip through.

A name that does not resolve (yet, or for now) is not a refusal: DNS fails for ordinary reasons,
so delivery retries it like a connection error (``TargetUnresolved``). Only what the rules forbid
is refused for good (``TargetRefused``). ``check_input`` applies the same rules to URLs as they
arrive in requests, so a merchant learns of a forbidden target at once (a 400 field error)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from payops.domain import messages
from payops.errors import FieldErrors


class TargetRefused(ValueError):
    """Forbidden by the rules: never sent, the event fails for good."""


class TargetHasCredentials(TargetRefused):
    """A user name or password in the URL: never sent (it would travel in clear in logs)."""


class TargetUnresolved(OSError):
    """The name did not resolve now; retried like a connection error."""


# How long a request waits for DNS when checking a URL it was given; past it the URL is accepted
# and delivery (which checks again) decides.
INPUT_RESOLVE_SECONDS = 2.0


@dataclass(frozen=True)
class ResolvedTarget:
    url: str  # the URL with its host replaced by the checked address
    host_header: str
    sni_hostname: str | None


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return is_public(mapped)
        if address.teredo:
            return False
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def _split(url: str) -> tuple[Any, str, int]:
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TargetRefused(f"malformed URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise TargetRefused("only http and https targets are allowed")
    if parts.username or parts.password:
        raise TargetHasCredentials("credentials in the URL are not allowed")
    return parts, host, port


async def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:  # a literal address needs no resolver (nor a thread of the loop's busy executor)
        return [ipaddress.ip_address(host.split("%")[0])]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TargetUnresolved(f"cannot resolve {host}: {exc.strerror or exc}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise TargetUnresolved(f"cannot resolve {host}")
    return addresses


def _check_public(host: str, addresses: list[Any]) -> None:
    refused = [str(a) for a in addresses if not is_public(a)]
    if refused:
        raise TargetRefused(f"{host} resolves to a non-public address ({refused[0]})")


async def check_input(url: str, *, allow_private: bool) -> None:
    """Raise TargetRefused when ``url`` is a target delivery would refuse: a literal internal
    address, or a name resolving to one now. A name that does not resolve in time is let through
    (delivery retries and checks again)."""
    _parts, host, port = _split(url)
    if allow_private:
        return
    try:
        addresses = await asyncio.wait_for(_addresses(host, port), INPUT_RESOLVE_SECONDS)
    except (TimeoutError, TargetUnresolved):
        return
    _check_public(host, addresses)


async def resolve(url: str, *, allow_private: bool) -> ResolvedTarget:
    parts, host, port = _split(url)
    addresses = await _addresses(host, port)
    if not allow_private:
        _check_public(host, addresses)
    chosen = addresses[0]
    literal = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    host_header = parts.netloc.rpartition("@")[2]
    return ResolvedTarget(
        url=parts._replace(netloc=netloc).geturl(),
        host_header=host_header,
        sni_hostname=host if parts.scheme == "https" else None,
    )


async def refuse_private_fields(
    body: dict[str, Any], names: tuple[str, ...], *, allow_private: bool
) -> None:
    """A 400 field error for each of ``names`` in a request body whose URL is a target delivery
    would refuse. Runs after the syntax checks; values that are not URL strings are left to them."""
    errors: dict[str, list[str]] = {}
    for name in names:
        value = body.get(name)
        if not isinstance(value, str) or not value:
            continue
        try:
            _split(value)
        except TargetHasCredentials:
            # Delivery refuses these for good, private or not; accepted here they were dropped
            # silently at the first send.
            errors[name] = [messages.URL_WITH_CREDENTIALS]
            continue
        except TargetRefused:
            continue  # not a valid http(s) URL: the field's own validation says so
        if allow_private:
            continue
        try:
            await check_input(value, allow_private=False)
        except TargetRefused:
            errors[name] = [messages.PRIVATE_TARGET]
    if errors:
        raise FieldErrors(errors)
