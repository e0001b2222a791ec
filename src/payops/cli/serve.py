"""`payops serve`: the HTTP API and its background loops, in one or more worker processes."""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING

import typer

from payops.cli.common import fail, load_settings, migrate
from payops.cli.secrets import check_secret_key

if TYPE_CHECKING:
    from payops.config import Settings

PORT_RANGE = (1, 65535)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def is_loopback_host(host: str) -> bool:
    import ipaddress

    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may well be reachable from outside


def require_public_url(settings: Settings, host: str) -> None:
    """Without PAYOPS_PUBLIC_URL, checkout links are built from the request's Host header, which
    a client chooses. That is harmless only when nobody but this machine can reach the server:
    so a non-loopback bind address, or trusting a reverse proxy, needs the URL set."""
    if settings.public_url:
        return
    if not is_loopback_host(host):
        fail(
            f"set PAYOPS_PUBLIC_URL (e.g. https://pay.example.com) to serve on {host}: "
            "without it checkout links follow the client's Host header"
        )
    # PAYOPS_TRUSTED_PROXIES (authentication settings) puts a proxy in front: same rule.
    if settings.trusted_proxy_list:
        fail(
            "set PAYOPS_PUBLIC_URL (e.g. https://pay.example.com) when trusting a proxy "
            "(PAYOPS_TRUSTED_PROXIES): without it checkout links follow the Host header"
        )


def port_number(raw: str | int, source: str) -> int:
    try:
        port = int(str(raw).strip())
    except ValueError:
        port = 0
    low, high = PORT_RANGE
    if not low <= port <= high:
        fail(f"{source} {str(raw)!r} is not a port: give a number from {low} to {high}")
    return port


def base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}"


def check_can_listen(host: str, port: int) -> None:
    """Say in one line that the address is taken (or cannot be bound) before any worker starts;
    uvicorn would log it and exit."""
    try:
        infos = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        fail(
            f"cannot listen on {host}: the name does not resolve ({exc.strerror}); "
            "give --host an address of this machine"
        )
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            why = (
                "the address is in use (is another server running?)"
                if exc.errno == errno.EADDRINUSE
                else (exc.strerror or str(exc)).lower()
            )
            fail(
                f"cannot listen on {base_url(host, port)}: {why}; choose another --port "
                "(or PAYOPS_PORT)"
            )


def serve(
    host: str = typer.Option(None, help="Bind address (default PAYOPS_HOST or 127.0.0.1)"),
    port: str = typer.Option(
        None, metavar="PORT", help="Port, 1 to 65535 (default PAYOPS_PORT or 8000)"
    ),
    migrate_first: bool = typer.Option(
        True, "--migrate/--no-migrate", help="Apply migrations before starting"
    ),
    workers: int = typer.Option(
        None,
        min=1,
        help="Worker processes (default PAYOPS_WORKERS, or "
        "one per CPU core on PostgreSQL and one on SQLite); each gets a "
        "share of PAYOPS_DB_POOL_TOTAL",
    ),
) -> None:
    """Run the HTTP API (and the background loops) in one or more worker processes."""
    import logging
    import os

    import uvicorn

    from payops import logging as payops_logging
    from payops.api import serving
    from payops.api.server import HeaderLimitedHttpToolsProtocol
    from payops.config import get_settings

    settings = load_settings()
    bind_host = host or settings.host
    bind_port = (
        port_number(port, "--port")
        if port is not None
        else port_number(settings.port, "PAYOPS_PORT")
    )
    require_public_url(settings, bind_host)
    count = workers or settings.effective_workers
    try:
        plan = serving.check_pool(settings, count)
    except serving.ServeConfigError as exc:
        fail(str(exc))
    if settings.log_level.upper() not in LOG_LEVELS:
        fail(
            f"PAYOPS_LOG_LEVEL {settings.log_level!r} is not a level: use one of "
            f"{', '.join(LOG_LEVELS)}"
        )
    # From here on every line this process (and each worker) writes is one JSON object.
    payops_logging.configure(settings.log_level)
    if migrate_first:
        migrate(settings)
    check_secret_key()
    check_can_listen(bind_host, bind_port)
    # The workers read their settings from the environment: tell them how many they are.
    os.environ["PAYOPS_WORKERS"] = str(count)
    if count > 1:  # the workers end with this process (api/serving.py)
        os.environ[serving.SUPERVISOR_ENV] = str(os.getpid())
    get_settings.cache_clear()
    metrics_dir = serving.prepare_metrics_dir()
    # Forwarded headers only from PAYOPS_TRUSTED_PROXIES (uvicorn alone would trust 127.0.0.1).
    trusted = settings.trusted_proxy_list
    url = base_url(bind_host, bind_port)
    logging.getLogger("payops.serve").info(
        "listening on %s with %s", url, plan, extra={"url": url, "workers": count}
    )
    try:
        uvicorn.run(
            "payops.api.serving:serve_app",
            factory=True,
            workers=count,
            host=bind_host,
            port=bind_port,
            log_config=payops_logging.uvicorn_log_config(settings.log_level),
            log_level="warning",
            # The application writes the access line itself (payops.http "request",
            # with the request id and the route, never the raw path).
            access_log=False,
            # httptools with a 16 KiB limit on the request line and headers (decisions.md).
            http=HeaderLimitedHttpToolsProtocol,
            proxy_headers=bool(trusted),
            forwarded_allow_ips=trusted or None,
            # uvicorn replaces a worker that misses this deadline on a health check or
            # at start-up. Its 5 s default killed busy workers (and the requests they
            # held) on a loaded 2-core machine; a hung worker is still replaced.
            timeout_worker_healthcheck=serving.WORKER_HEALTHCHECK_SECONDS,
        )
    finally:
        serving.remove_metrics_dir(metrics_dir)
