"""``HttpWebhookSender`` against a real HTTP receiver on 127.0.0.1: the three body formats
parsed back (CloudEvents with the SDK), retries, timeouts, the background queue, and no URL
in any log line."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http_event

from tensorgate.api.spec import Webhook
from tensorgate.notify.webhooks import HttpWebhookSender
from tests.webhook_receiver import Receiver, webhook_receiver

PAYLOAD: dict[str, Any] = {
    "name": "mnist",
    "namespace": "ml",
    "phase": "Progressing",
    "model": "mnist",
    "version": "2",
    "revision": "abc123",
    "weight": 25,
    "gate": {
        "stableAccuracy": 0.94,
        "candidateAccuracy": 0.935,
        "upperBound": 0.012,
        "margin": 0.02,
        "n": 2000,
    },
    "reason": "StepAdvanced",
    "message": "canary at 25%",
    "hook": {"name": "h", "type": "event"},
    "metadata": {"team": "vision"},
}


def hook(receiver: Receiver, path: str, **kw: Any) -> Webhook:
    return Webhook.model_validate(
        {"name": "h", "type": "event", "url": f"{receiver.url}{path}", **kw}
    )


@pytest.fixture
def receiver() -> Any:
    with webhook_receiver() as r:
        yield r


async def test_webhook_json_body_is_the_payload(receiver: Receiver) -> None:
    sender = HttpWebhookSender()
    result = await sender.call(hook(receiver, "/json"), PAYLOAD)
    await sender.aclose()
    assert (result.passed, result.code, result.attempts) == (True, 200, 1)
    (got,) = receiver.at("/json")
    assert got.headers["content-type"] == "application/json"
    assert got.json() == PAYLOAD


async def test_webhook_cloudevents_structured_mode_parses_back_with_the_sdk(
    receiver: Receiver,
) -> None:
    sender = HttpWebhookSender()
    result = await sender.call(hook(receiver, "/ce", format="cloudevents"), PAYLOAD)
    await sender.aclose()
    assert result.passed
    (got,) = receiver.at("/ce")
    assert got.headers["content-type"].startswith("application/cloudevents+json")
    event = from_http_event(HTTPMessage(headers=got.headers, body=got.body))
    assert event.get_type() == "dev.tensorgate.rollout.event"
    assert (
        event.get_source() == "/apis/tensorgate.dev/v1alpha1/namespaces/ml/modeldeployments/mnist"
    )
    assert event.get_subject() == "mnist"
    assert event.get_specversion() == "1.0"
    assert event.get_data() == PAYLOAD


async def test_webhook_slack_text_is_built_from_the_payload(receiver: Receiver) -> None:
    sender = HttpWebhookSender()
    await sender.call(hook(receiver, "/slack", format="slack"), PAYLOAD)
    await sender.aclose()
    (got,) = receiver.at("/slack")
    doc = got.json()
    assert list(doc) == ["text"]
    text = doc["text"]
    assert "*ml/mnist* Progressing" in text and "version 2 (revision abc123)" in text
    assert "25% canary traffic: canary at 25%" in text
    assert "accuracy 0.9350 vs stable 0.9400" in text and "2000 samples" in text


async def test_webhook_500_then_200_succeeds_on_a_retry(receiver: Receiver) -> None:
    receiver.scripts["/flaky"] = [500, 200]
    sender = HttpWebhookSender(backoff_s=0.05)
    result = await sender.call(hook(receiver, "/flaky", retries=2), PAYLOAD)
    await sender.aclose()
    assert (result.passed, result.code, result.attempts) == (True, 200, 2)
    assert len(receiver.at("/flaky")) == 2


async def test_webhook_4xx_is_final_and_5xx_exhausts_the_retries(receiver: Receiver) -> None:
    receiver.scripts["/no"] = [403]
    receiver.scripts["/down"] = [503]
    sender = HttpWebhookSender(backoff_s=0.01)
    refused = await sender.call(hook(receiver, "/no", retries=3), PAYLOAD)
    down = await sender.call(hook(receiver, "/down", retries=3), PAYLOAD)
    await sender.aclose()
    assert (refused.passed, refused.code, refused.attempts) == (False, 403, 1)
    assert len(receiver.at("/no")) == 1
    assert (down.passed, down.code, down.attempts) == (False, 503, 4)
    assert down.message == "HTTP 503 after 4 attempts"
    assert len(receiver.at("/down")) == 4


async def test_webhook_that_hangs_is_a_failure_within_its_timeout(receiver: Receiver) -> None:
    receiver.hang_s["/hang"] = 5.0
    sender = HttpWebhookSender(backoff_s=0.01)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await sender.call(hook(receiver, "/hang", timeout="300ms", retries=1), PAYLOAD)
    took_s = loop.time() - started
    await sender.aclose()
    assert (result.passed, result.code, result.attempts) == (False, None, 2)
    assert "no answer from 127.0.0.1" in result.message and "within 0.3s" in result.message
    assert len(receiver.at("/hang")) == 2
    assert took_s < 4.0  # bounded by 2 x 300ms, far below the receiver's 5s


async def test_webhook_unreachable_is_a_failure_not_an_error() -> None:
    with webhook_receiver() as gone:
        url = gone.url
    sender = HttpWebhookSender(backoff_s=0.01)
    result = await sender.call(
        Webhook.model_validate({"name": "h", "type": "rollback", "url": url, "retries": 1}),
        PAYLOAD,
    )
    await sender.aclose()
    assert (result.passed, result.code, result.attempts) == (False, None, 2)
    assert "cannot reach 127.0.0.1" in result.message


async def test_webhook_posts_are_queued_and_drained_in_the_background(
    receiver: Receiver,
) -> None:
    receiver.hang_s["/events"] = 0.2
    sender = HttpWebhookSender()
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(3):
        sender.post(hook(receiver, "/events"), PAYLOAD)
    assert loop.time() - started < 0.1  # post never waits for the receiver
    await sender.drain(10.0)
    await sender.aclose()
    assert len(receiver.at("/events")) == 3


async def test_webhook_queue_full_drops_instead_of_blocking(receiver: Receiver) -> None:
    receiver.hang_s["/slow"] = 1.0
    sender = HttpWebhookSender(queue_size=2)
    for _ in range(5):
        sender.post(hook(receiver, "/slow", timeout="2s", retries=0), PAYLOAD)
    assert sender.dropped == 3
    await sender.aclose()


async def test_webhook_url_secrets_never_reach_logs_or_results(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.scripts["/secret"] = [500]
    caplog.set_level(logging.DEBUG)
    sender = HttpWebhookSender(backoff_s=0.01)
    url = receiver.url.replace("http://", "http://user:hunter2@") + "/secret?token=s3cr3t"
    secret = Webhook.model_validate({"name": "h", "type": "event", "url": url, "retries": 0})
    result = await sender.call(secret, PAYLOAD)
    sender.post(secret, PAYLOAD)
    await sender.drain(5.0)
    await sender.aclose()
    assert not result.passed
    text = caplog.text + result.message
    assert "webhook h" in caplog.text
    assert "hunter2" not in text and "s3cr3t" not in text and "/secret" not in text
