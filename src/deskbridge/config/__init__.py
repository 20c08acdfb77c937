"""Settings from the environment and the accounts file."""

from deskbridge.config.accounts import (
    GRAPH_API_BASE,
    GRAPH_API_VERSION,
    AccountConfig,
    AccountsFile,
    AppConfig,
    ChannelConfig,
    DeskConfig,
    LineConfig,
    MessengerConfig,
    MetaAppConfig,
    SandboxDeskConfig,
    TelegramConfig,
    WhatsAppConfig,
    WhatsAppTemplate,
    ZendeskDeskConfig,
    load_accounts,
    parse_accounts,
)
from deskbridge.config.settings import Settings

__all__ = [
    "GRAPH_API_BASE",
    "GRAPH_API_VERSION",
    "AccountConfig",
    "AccountsFile",
    "AppConfig",
    "ChannelConfig",
    "DeskConfig",
    "LineConfig",
    "MessengerConfig",
    "MetaAppConfig",
    "SandboxDeskConfig",
    "Settings",
    "TelegramConfig",
    "WhatsAppConfig",
    "WhatsAppTemplate",
    "ZendeskDeskConfig",
    "load_accounts",
    "parse_accounts",
]
