"""deskbridge: a channel gateway between customer messaging channels and SaaS helpdesks."""

__version__ = "0.1.0"

__all__ = ["__version__"]
