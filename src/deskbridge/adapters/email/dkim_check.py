"""deskbridge's own DKIM check (dkimpy), for deployments whose MTA does not stamp a
trusted Authentication-Results header. Blocking (DNS): call it off the event loop."""

from __future__ import annotations

from collections.abc import Callable

import dkim

from deskbridge.adapters.email.auth import org_domain

__all__ = ["dkim_aligned"]

DnsFunc = Callable[..., bytes | None]


def dkim_aligned(raw: bytes, from_domain: str, *, dnsfunc: DnsFunc | None = None) -> bool:
    """Whether ``raw`` carries a DKIM signature that verifies AND whose ``d=`` is aligned
    with the From domain (same organizational domain). A valid signature of some other
    domain authenticates nothing. Never raises."""
    try:
        checker = dkim.DKIM(raw)
        signatures = [h for h in checker.headers if h[0].lower() == b"dkim-signature"]
        want = org_domain(from_domain.lower())
        for index, (_, value) in enumerate(signatures):
            text = value.decode(errors="replace")
            tags = dict(part.strip().split("=", 1) for part in text.split(";") if "=" in part)
            domain = tags.get("d", "").strip().lower()
            if not domain or org_domain(domain) != want:
                continue
            kw = {"dnsfunc": dnsfunc} if dnsfunc is not None else {}
            if checker.verify(idx=index, **kw):
                return True
    except Exception:  # dkimpy raises many kinds; what cannot be verified is unauthenticated
        return False
    return False
