"""Settings from the environment and the accounts file."""

from deskbridge.config.accounts import (
    AccountConfig,
    AccountsFile,
    ChannelConfig,
    DeskConfig,
    SandboxDeskConfig,
    TelegramConfig,
    ZendeskDeskConfig,
    load_accounts,
    parse_accounts,
)
from deskbridge.config.settings import Settings

__all__ = [
    "AccountConfig",
    "AccountsFile",
    "ChannelConfig",
    "DeskConfig",
    "SandboxDeskConfig",
    "Settings",
    "TelegramConfig",
    "ZendeskDeskConfig",
    "load_accounts",
    "parse_accounts",
]
