"""`payops serve` refuses to start where its checkout links could be pointed elsewhere: without
PAYOPS_PUBLIC_URL, a link follows the request's Host header, so only loopback may serve."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import serve_env, wait_until_healthy
from tests.live import free_port

# TEST-NET-1 (RFC 5737): assigned to no interface here, so nothing could ever listen on it.
OUTSIDE_ADDRESS = "192.0.2.10"


@pytest.mark.parametrize("how", ["option", "environment"])
def test_serve_on_a_non_loopback_address_needs_the_public_url(tmp_path: Path, how: str) -> None:
    if how == "option":
        args, env = ["--host", OUTSIDE_ADDRESS], serve_env(tmp_path)
    else:
        args, env = [], serve_env(tmp_path, PAYOPS_HOST=OUTSIDE_ADDRESS)
    done = subprocess.run(
        [sys.executable, "-m", "payops.cli.main", "serve", *args, "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "set PAYOPS_PUBLIC_URL" in done.stderr and OUTSIDE_ADDRESS in done.stderr
    assert not (tmp_path / "data" / "payops.sqlite3").exists(), "refused before any work"


def test_serve_on_loopback_without_public_url_still_starts(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "payops.cli.main",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=serve_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until_healthy(server, f"http://127.0.0.1:{port}")
    finally:
        server.terminate()
        server.wait(timeout=30)
