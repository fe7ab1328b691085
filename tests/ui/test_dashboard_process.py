"""``flowcraft ui`` as a real process: it binds 127.0.0.1 by default, prints a fresh token when
FLOWCRAFT_UI_TOKEN is not set, and that token (and only it) lets a script act."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def post(url: str, token: str) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=b"", method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def test_the_printed_token_is_the_one_that_acts(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWCRAFT_")}
    err = tmp_path / "ui.stderr"
    script = Path(sys.executable).parent / "flowcraft"
    with err.open("wb") as sink:
        proc = subprocess.Popen(
            [str(script), "ui", "--backend", "memory://", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        deadline = time.monotonic() + 30
        while "action token" not in err.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.1)
        line = err.read_text()
        match = re.search(rf"http://127\.0\.0\.1:{port}/ ; action token: (\S+)", line)
        assert match, line
        token = match.group(1)
        base = f"http://127.0.0.1:{port}"
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, err.read_text()
                time.sleep(0.1)
        code, body = post(f"{base}/runs/nope/cancel", token + "x")
        assert code == 403 and "bearer token is wrong" in body
        code, body = post(f"{base}/runs/nope/cancel", token)
        assert code == 409 and "no run" in body  # let through, and the client said why not
    finally:
        proc.terminate()
        proc.wait(10)
