"""Every Redis key and Lua script deskbridge uses."""

from deskbridge.store.connection import PrivateRedis, check_policy, connect
from deskbridge.store.conversations import ConversationRecord, ConversationStore
from deskbridge.store.crypto import Vault
from deskbridge.store.deliveries import JOB_FUNCTIONS, DeliveryStore, Unparsed
from deskbridge.store.ids import new_id
from deskbridge.store.intake import Coalescer, IgnoredItem, Intake, IntakeEvent
from deskbridge.store.sandbox import SandboxStore

__all__ = [
    "JOB_FUNCTIONS",
    "Coalescer",
    "ConversationRecord",
    "ConversationStore",
    "DeliveryStore",
    "IgnoredItem",
    "Intake",
    "IntakeEvent",
    "PrivateRedis",
    "SandboxStore",
    "Unparsed",
    "Vault",
    "check_policy",
    "connect",
    "new_id",
]
