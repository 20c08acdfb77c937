"""Recognising people: normalisation of identifiers (here) and, later, the identity graph."""

from deskbridge.identity.phones import e164

__all__ = ["e164"]
