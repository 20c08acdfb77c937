"""The accounts file: secrets from the environment and files, precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from deskbridge.config import TelegramConfig, ZendeskDeskConfig, load_accounts, parse_accounts
from deskbridge.errors import ConfigError


def problems(text: str, base: Path | None = None) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as exc:
        parse_accounts(text, base=base)
    return exc.value.problems


def test_env_and_file_secrets(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ZD_TOKEN_FOR_TEST", "zd-secret-value")
    (tmp_path / "hook").write_text("whsec\n")
    accounts = parse_accounts(
        """
accounts:
  acme:
    desk:
      type: zendesk
      subdomain: acme
      email: a@acme.test
      api_token: ${ZD_TOKEN_FOR_TEST}
      webhook_secret_file: hook
    channels:
      - type: telegram
        bot_token: "1:abc"
        secret_token: ${UNSET_FOR_TEST:-fallback_secret}
""",
        base=tmp_path,
    )
    desk = accounts.accounts["acme"].desk
    assert isinstance(desk, ZendeskDeskConfig)
    assert desk.api_token is not None and desk.webhook_secret is not None
    assert desk.api_token.get_secret_value() == "zd-secret-value"
    assert desk.webhook_secret.get_secret_value() == "whsec"  # trailing newline stripped
    assert desk.api_base() == "https://acme.zendesk.com"
    tg = accounts.accounts["acme"].channel("telegram")
    assert isinstance(tg, TelegramConfig)
    assert tg.secret_token.get_secret_value() == "fallback_secret"
    assert "zd-secret-value" not in repr(accounts) and "whsec" not in repr(
        accounts
    )  # secrets never print


def test_every_problem_is_reported_with_its_path(tmp_path: Path) -> None:
    found = problems(
        """
accounts:
  acme:
    desk: {type: zendesk, base_url: https://z.test}
    channels:
      - {type: telegram, bot_token: "1:a", secret_token: "has spaces"}
      - {type: telegram, bot_token: "1:a", secret_token: ok, colour: blue}
  other:
    desk: {type: helpscout}
    channels:
      - {type: telegram, bot_token: "1:a", secret_token: s, bot_token_file: missing}
""",
        base=tmp_path,
    )
    where = dict(found)
    assert (
        where["accounts.other.channels[0].bot_token_file"]
        == "give either bot_token or bot_token_file, not both"
    )
    # reported together with the schema's findings, not before them
    assert where["accounts.acme.channels[0].secret_token"].startswith("must be 1-256")
    assert "accounts.other.desk" in where
    found = problems(
        """
accounts:
  acme:
    desk: {type: zendesk, base_url: https://z.test}
    channels:
      - {type: telegram, bot_token: "1:a", secret_token: "has spaces"}
      - {type: telegram, bot_token: "1:a", secret_token: ok, colour: blue}
  other:
    desk: {type: helpscout}
"""
    )
    where = dict(found)
    assert where["accounts.acme.desk"] == "needs email and api_token, or oauth_token"
    assert where["accounts.acme.channels[0].secret_token"].startswith("must be 1-256 characters")
    assert where["accounts.acme.channels[1].colour"] == "Extra inputs are not permitted"
    assert "accounts.other.desk" in where and "helpscout" in where["accounts.other.desk"]


def test_yaml_errors_name_the_line() -> None:
    [(where, _)] = problems("accounts:\n  acme: [unclosed\n")
    assert where.startswith("line ")


def test_bad_account_names_and_duplicate_channels() -> None:
    found = dict(
        problems(
            """
accounts:
  Acme Corp:
    desk: {type: sandbox}
  acme:
    desk: {type: sandbox}
    channels:
      - {type: telegram, bot_token: "1:a", secret_token: s}
      - {type: telegram, bot_token: "2:b", secret_token: t}
"""
        )
    )
    assert any(k.startswith("accounts.Acme Corp") for k in found)
    assert found["accounts.acme.channels"] == "channel 'telegram' is configured twice"


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_accounts(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError):
        load_accounts(tmp_path / "list.yaml")


def test_one_run_reports_variables_files_schema_and_apps_at_their_places(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("DESKBRIDGE_TEST_UNSET", raising=False)
    found = problems(
        """
apps:
  meta-main: {type: meta, app_secret: s, verify_token: v, colour: red}
accounts:
  acme:
    desk:
      type: zendesk
      base_url: 127.0.0.1:18301/zendesk
      email: [a@b.c]
      api_token: ${DESKBRIDGE_TEST_UNSET}
    channels:
      - {type: whatsapp, app: nothere, phone_number_id: "1", access_token: x}
      - type: line
        channel_id: "1"
        channel_secret_file: missing.txt
        access_token: t
        base_url: ftp://x
""",
        base=tmp_path,
    )
    assert found == [
        ("accounts.acme.desk.api_token", "environment variable DESKBRIDGE_TEST_UNSET is not set"),
        (
            "accounts.acme.channels[1].channel_secret_file",
            f"cannot read {tmp_path / 'missing.txt'}: No such file or directory",
        ),
        ("apps.meta-main.colour", "Extra inputs are not permitted"),
        (
            "accounts.acme.desk.base_url",
            "'127.0.0.1:18301/zendesk' is not an http:// or https:// URL",
        ),
        ("accounts.acme.desk.email", "Input should be a valid string"),
        ("accounts.acme.channels[1].base_url", "'ftp://x' is not an http:// or https:// URL"),
        ("accounts.acme.channels[0].app", "'nothere' is not under apps:"),
    ]


def test_an_unknown_app_alone_is_reported_at_the_channel() -> None:
    found = problems(
        """
accounts:
  acme:
    desk: {type: sandbox}
    channels:
      - {type: messenger, app: nothere, page_id: "3", page_access_token: x}
"""
    )
    assert found == [("accounts.acme.channels[0].app", "'nothere' is not under apps:")]


def test_one_support_address_per_smtp_listener_whatever_its_case() -> None:
    mail = "{type: email, address: %s, inbound: smtp, sandbox: true}"
    text = f"""
accounts:
  acme:
    desk: {{type: sandbox}}
    channels: [{mail % "Help@Acme.example"}]
  beta:
    desk: {{type: sandbox}}
    channels: [{mail % "help@acme.EXAMPLE"}]
"""
    [(where, what)] = problems(text)
    assert where == "(top)" and "help@acme.EXAMPLE is also 'acme'" in what
    other = text.replace(
        "help@acme.EXAMPLE, inbound: smtp",
        'help@acme.EXAMPLE, inbound: smtp, smtp_listen: "127.0.0.1:2526"',
    )
    assert set(parse_accounts(other).accounts) == {"acme", "beta"}


def test_a_webhook_secret_not_yet_written_is_a_note(tmp_path: Path) -> None:
    notes: list[tuple[str, str]] = []
    accounts = parse_accounts(
        """
accounts:
  acme:
    desk:
      type: zendesk
      subdomain: acme
      email: agent@acme.example
      api_token: t
      webhook_secret_file: secrets/zendesk-webhook
""",
        base=tmp_path,
        notes=notes,
    )
    desk = accounts.accounts["acme"].desk
    assert isinstance(desk, ZendeskDeskConfig) and desk.webhook_secret is None
    assert notes == [
        (
            "accounts.acme.desk.webhook_secret_file",
            f"{tmp_path / 'secrets/zendesk-webhook'} is not written yet (`channels register`)",
        )
    ]
