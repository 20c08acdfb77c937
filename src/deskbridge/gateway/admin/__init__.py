"""The admin API (``/admin/v1/``): JWT-authenticated, scoped, audited."""

from deskbridge.gateway.admin.auth import SCOPES, AdminAuth, Principal, admin_auth, mint
from deskbridge.gateway.admin.routes import PREFIX, ROUTES, add_routes

__all__ = [
    "PREFIX",
    "ROUTES",
    "SCOPES",
    "AdminAuth",
    "Principal",
    "add_routes",
    "admin_auth",
    "mint",
]
