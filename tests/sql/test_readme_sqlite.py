"""The README's embedded SQLite flow, run as written: its worker command in the background,
then its start and wait commands, in a fresh directory (so ``runs.db`` is new)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MARKER = "<!-- embedded-sqlite -->"


def readme_commands() -> tuple[str, list[str]]:
    text = (REPO / "README.md").read_text()
    block = re.search(re.escape(MARKER) + r"\n```sh\n(.*?)```", text, re.S)
    assert block, f"README.md has no ```sh block after {MARKER}"
    lines = [ln for ln in block.group(1).splitlines() if ln.strip() and not ln.startswith("#")]
    workers = [ln for ln in lines if ln.startswith("flowcraft worker")]
    assert len(workers) == 1, lines
    return workers[0], [ln for ln in lines if ln not in workers]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_readme_embedded_sqlite_flow_works_as_written(tmp_path: Path) -> None:
    worker_line, client_lines = readme_commands()
    (tmp_path / "examples").symlink_to(REPO / "examples")
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWCRAFT_")}
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(REPO)
    err = (tmp_path / "worker.err").open("wb")
    worker = subprocess.Popen(
        ["bash", "-c", "exec " + worker_line],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=err,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while "ready" not in (tmp_path / "worker.err").read_text(errors="replace"):
            assert worker.poll() is None, (tmp_path / "worker.err").read_text()
            assert time.monotonic() < deadline, "the README's worker never got ready"
            time.sleep(0.1)
        script = "set -euo pipefail\n" + "\n".join(client_lines)
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
        err.close()
    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert '"status": "completed"' in last, done.stdout
    assert (tmp_path / "runs.db").exists()  # the file was the backend, no server
