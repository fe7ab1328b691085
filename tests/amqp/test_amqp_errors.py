"""Bad input on amqp:// ends in one line naming the problem: from the CLI, and without pika."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FLOWCRAFT = str(Path(sys.executable).parent / "flowcraft")


def cli(*args: str, queue: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWCRAFT_")}
    env.update(FLOWCRAFT_QUEUE=queue, FLOWCRAFT_BACKEND="memory://", PYTHONPATH=str(REPO))
    return subprocess.run(
        [FLOWCRAFT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("queue", "message"),
    [
        (
            "amqp://guest:s3cret@127.0.0.1:1/",
            "error: cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:1/: AMQPConnectionError",
        ),
        ("amqp://guest:s3cret@127.0.0.1:5672/?bogus=1", "error: invalid RabbitMQ URL"),
    ],
)
def test_a_worker_on_a_bad_queue_url_fails_in_one_line(
    queue: str, message: str, amqp_server: str
) -> None:
    done = cli("worker", "--registry", "examples.orders:registry", queue=queue)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(message), done.stderr
    assert done.stderr.count("\n") == 1 and "s3cret" not in done.stderr, done.stderr


def test_without_pika_the_driver_lists_itself_and_says_what_to_install() -> None:
    probe = """
import sys
sys.modules["pika"] = None  # as if the amqp extra were not installed
from flowcraft_core.drivers import driver_for, open_backends
from flowcraft_core.errors import DriverError
print(driver_for("amqp://h/").name)
try:
    open_backends("memory://", queue="amqp://h/")
except DriverError as exc:
    print(exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    name, error = done.stdout.strip().splitlines()
    assert name == "amqp"
    assert error == "the amqp driver needs the 'amqp' extra: pip install 'flowcraft[amqp]'"
