"""The README's quick start and curl walk-through, run as written against a live server."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- walkthrough:start -->\s*```sh\n(.*?)```\s*<!-- walkthrough:end -->", text, re.S
    )
    assert block, "README lost its walk-through markers"
    return block.group(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def playground(tmp_path: Path) -> Path:
    """A project folder whose .venv is the running interpreter's environment."""
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    return tmp_path


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYOPS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_readme_walkthrough_runs_as_written(playground: Path) -> None:
    env = clean_env()
    port = free_port()
    demo = subprocess.run(
        [".venv/bin/payops", "demo"],
        cwd=playground,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    assert (playground / ".payops" / "demo.env").exists()
    server = subprocess.Popen(
        [".venv/bin/payops", "serve", "--port", str(port)],
        cwd=playground,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        script = walkthrough().replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=playground,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        out = run.stdout
        assert '"operation":"refund"' in out and '"state":"refunded"' in out
        assert (
            '{"detail":"Amount exceeds the refundable amount (20.000 KWD)","operation":"refund",'
            '"result":"failed"}' in out
        )
        assert '"state":"paid"' in out and '"refunded_amount":"5.000"' in out
        assert "refunded" in out.split("operations (child transactions)")[-1]
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
