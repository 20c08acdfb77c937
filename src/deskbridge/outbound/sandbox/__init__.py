"""The built-in sandbox desk."""

from deskbridge.outbound.sandbox.connector import SandboxBackend, SandboxConnector

__all__ = ["SandboxBackend", "SandboxConnector"]
