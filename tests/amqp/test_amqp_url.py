"""amqp:// URLs: what is ours, what goes to pika, and one-line errors for the rest."""

from __future__ import annotations

import pytest

from flowcraft_amqp.url import AmqpSettings, parse_url
from flowcraft_core.errors import DriverError


def test_defaults_and_our_parameters() -> None:
    settings = parse_url("amqp://guest:guest@127.0.0.1:5672/")
    assert settings == AmqpSettings(url="amqp://guest:guest@127.0.0.1:5672/")
    settings = parse_url("amqps://u:p@mq.example:5671/prod?queue=orders&poll=0.05&expires=60")
    assert (settings.queue, settings.poll, settings.expires) == ("orders", 0.05, 60.0)
    assert settings.url == "amqps://u:p@mq.example:5671/prod"  # ours are not pika's


def test_pika_options_pass_through() -> None:
    settings = parse_url("amqp://h/?heartbeat=10&queue=q&connection_attempts=3")
    assert settings.queue == "q"
    assert settings.url == "amqp://h/?heartbeat=10&connection_attempts=3"


def test_redelivery_bounds_follow_poll() -> None:
    assert parse_url("amqp://h/").redelivery_bound == pytest.approx(5.2)
    assert parse_url("amqp://h/?poll=0.5").redelivery_after_error == pytest.approx(6.0)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://h/", "scheme must be amqp"),
        ("amqp://h:notaport/", "Port could not be cast"),
        ("amqp://h/#frag", "fragment"),
        ("amqp://h/?poll=0", "poll must be between"),
        ("amqp://h/?poll=soon", "poll must be a number"),
        ("amqp://h/?expires=0.5", "expires must be between"),
        ("amqp://h/?queue=", "queue must be 1 to 200"),
        ("amqp://h/?queue=a%20b", "without spaces"),
        ("amqp://h/?queue=amq.x", "reserved"),
        ("amqp://h/?queue=a&queue=b", "more than once"),
        ("amqp://h/?bogus=1", "Unknown URL parameter: 'bogus'"),
        ("amqp://h/?heartbeat=x", "Invalid heartbeat"),
    ],
)
def test_bad_urls_are_one_line_errors(url: str, problem: str) -> None:
    with pytest.raises(DriverError, match="invalid RabbitMQ URL") as caught:
        parse_url(url)
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


def test_passwords_are_masked_in_errors() -> None:
    with pytest.raises(DriverError) as caught:
        parse_url("amqp://user:s3cret@h/?bogus=1")
    assert "s3cret" not in str(caught.value)
    assert "user:***@h" in str(caught.value)
