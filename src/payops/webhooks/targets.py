"""Which webhook targets may be called: http(s) only, and never loopback, private, link-local or
otherwise internal addresses unless PAYOPS_WEBHOOK_ALLOW_PRIVATE is set. The check runs on every
address the name resolves to, and the connection then goes to the checked address itself, so a
DNS answer that changes between check and connect cannot slip through."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


class TargetRefused(ValueError):
    pass


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
        address.is_private or address.is_loopback or address.is_link_local
        or address.is_multicast or address.is_reserved or address.is_unspecified
        or not address.is_global
    )


async def resolve(url: str, *, allow_private: bool) -> ResolvedTarget:
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TargetRefused(f"malformed URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise TargetRefused("only http and https targets are allowed")
    if parts.username or parts.password:
        raise TargetRefused("credentials in the URL are not allowed")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TargetRefused(f"cannot resolve {host}: {exc.strerror or exc}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not addresses:
        raise TargetRefused(f"cannot resolve {host}")
    if not allow_private:
        refused = [str(a) for a in addresses if not is_public(a)]
        if refused:
            raise TargetRefused(f"{host} resolves to a non-public address ({refused[0]})")
    chosen = addresses[0]
    literal = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    host_header = parts.netloc.rpartition("@")[2]
    return ResolvedTarget(
        url=parts._replace(netloc=netloc).geturl(),
        host_header=host_header,
        sni_hostname=host if parts.scheme == "https" else None,
    )
