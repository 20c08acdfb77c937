"""The built-in sandbox desk."""

from deskbridge.outbound.sandbox.connector import SandboxBackend, SandboxConnector
from deskbridge.outbound.sandbox.spec import SPEC

__all__ = ["SPEC", "SandboxBackend", "SandboxConnector"]
