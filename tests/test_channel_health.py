"""Per-channel health polled from the platforms (respx-mocked)."""

from __future__ import annotations

import time

from deskbridge.flows.health import poll_channel_health

from .conftest import LINE_YAML, META_YAML, TG_TOKEN, WA_NUMBER, WA_OTHER, ZENDESK_YAML


def gauge(rt, account: str, channel: str, check: str) -> float | None:
    return rt.metrics.registry.get_sample_value(
        "deskbridge_channel_health", {"account": account, "channel": channel, "check": check}
    )


async def test_telegram_webhook_backlog_and_last_error(make_runtime, respx_mock) -> None:
    rt = make_runtime(ZENDESK_YAML)
    respx_mock.post(f"https://tg.test/bot{TG_TOKEN}/getWebhookInfo").respond(
        200,
        json={
            "ok": True,
            "result": {
                "url": "https://gw.example/webhooks/telegram/acme",
                "pending_update_count": 7,
                "last_error_date": int(time.time()) - 120,
                "last_error_message": "Connection timed out",
            },
        },
    )
    assert await poll_channel_health(rt) == 1
    assert gauge(rt, "acme", "telegram", "webhook_pending") == 7
    assert 100 < (gauge(rt, "acme", "telegram", "webhook_error_age_seconds") or 0) < 300
    assert gauge(rt, "acme", "telegram", "credentials_valid") == 1


async def test_meta_tokens_and_a_refused_one(make_runtime, respx_mock) -> None:
    rt = make_runtime(META_YAML)
    graph = "https://graph.test/v23.0"
    respx_mock.get(f"{graph}/{WA_NUMBER}").respond(200, json={"id": WA_NUMBER})
    respx_mock.get(f"{graph}/{WA_OTHER}").respond(
        400,
        json={
            "error": {
                "message": "Error validating access token",
                "type": "OAuthException",
                "code": 190,
            }
        },
    )
    respx_mock.get(f"{graph}/me").respond(200, json={"id": "300000000000001"})
    assert await poll_channel_health(rt) == 3
    assert gauge(rt, "acme", "whatsapp", "credentials_valid") == 1
    assert gauge(rt, "acme", "messenger", "credentials_valid") == 1
    assert gauge(rt, "globex", "whatsapp", "credentials_valid") == 0


async def test_line_push_quota(make_runtime, respx_mock) -> None:
    rt = make_runtime(LINE_YAML)
    respx_mock.get("https://line.test/v2/bot/message/quota").respond(
        200, json={"type": "limited", "value": 1000}
    )
    respx_mock.get("https://line.test/v2/bot/message/quota/consumption").respond(
        200, json={"totalUsage": 250}
    )
    assert await poll_channel_health(rt) == 1
    assert gauge(rt, "acme", "line", "quota_used") == 250
    assert gauge(rt, "acme", "line", "quota_used_ratio") == 0.25


async def test_sandbox_channels_are_not_polled(make_runtime) -> None:
    rt = make_runtime()  # the demo-like account: every channel in sandbox mode
    assert await poll_channel_health(rt) == 0


async def test_a_failed_check_logs_its_reason(make_runtime, respx_mock, caplog) -> None:
    rt = make_runtime(ZENDESK_YAML)
    respx_mock.post(f"https://tg.test/bot{TG_TOKEN}/getWebhookInfo").respond(404, json={})
    with caplog.at_level("INFO", logger="deskbridge.flows.health"):
        assert await poll_channel_health(rt) == 0
    [line] = [r.getMessage() for r in caplog.records if "health of" in r.getMessage()]
    assert line == "health of acme/telegram: telegram getWebhookInfo: HTTP 404"
    assert TG_TOKEN not in caplog.text
