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
    assert len(found) == 1  # secret resolution problems are reported before validation
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
