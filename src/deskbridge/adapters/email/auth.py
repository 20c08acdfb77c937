"""Whether the From address of a mail is authenticated, read from Authentication-Results
(RFC 8601) headers written by a receiving server we trust.

Anyone can write an Authentication-Results header, so only headers whose authserv-id is
configured as trusted count; the border MTA must remove incoming headers that claim that
id (RFC 8601 §5). Alignment follows DMARC's relaxed mode (RFC 7489 §3.1) with a
simplified organizational domain: the last two labels, or three under a small list of
two-label public suffixes (``co.uk``, ``com.au``, ``co.jp`` ...). Using the full Public
Suffix List would need another dependency; the simple rule errs towards "not aligned"
only for rare suffixes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["authenticate", "org_domain"]

_TWO_LABEL_SUFFIXES = frozenset(
    {
        "co.uk", "org.uk", "ac.uk", "gov.uk", "me.uk", "ltd.uk", "plc.uk",
        "com.au", "net.au", "org.au", "edu.au", "gov.au",
        "co.jp", "ne.jp", "or.jp", "ac.jp", "go.jp",
        "co.nz", "org.nz", "co.za", "co.kr", "or.kr", "co.in", "co.il",
        "com.br", "com.cn", "net.cn", "org.cn", "com.tw", "com.hk", "com.sg",
        "com.mx", "com.ar", "com.tr", "com.es",
    }
)  # fmt: skip

_COMMENT = re.compile(r"\([^()]*\)")
_METHOD = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*=\s*([A-Za-z0-9_-]+)")
_PROPERTY = re.compile(r"([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)\s*=\s*(\"[^\"]*\"|[^\s;]+)")


def org_domain(domain: str) -> str:
    """The organizational domain of ``domain`` under the simplified rule above."""
    labels = domain.lower().rstrip(".").split(".")
    if len(labels) >= 3 and ".".join(labels[-2:]) in _TWO_LABEL_SUFFIXES:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _domain_of(value: str) -> str:
    value = value.strip().strip('"').lower().rstrip(".")
    return value.rpartition("@")[2]


def _aligned(domain: str, from_domain: str) -> bool:
    return bool(domain) and org_domain(domain) == org_domain(from_domain)


def _results(header: str) -> tuple[str, list[tuple[str, str, dict[str, str]]]]:
    """(authserv-id, [(method, result, properties)]) of one header."""
    text = header
    for _ in range(3):  # comments nest rarely and shallowly
        text = _COMMENT.sub(" ", text)
    head, _, rest = text.partition(";")
    authserv = head.strip().split()[0].lower() if head.strip() else ""
    results = []
    for resinfo in rest.split(";"):
        method = _METHOD.match(resinfo)
        if method is None:
            continue
        props = {k.lower(): v.strip('"') for k, v in _PROPERTY.findall(resinfo[method.end() :])}
        results.append((method.group(1).lower(), method.group(2).lower(), props))
    return authserv, results


def authenticate(
    headers: Iterable[str], from_domain: str | None, trusted: frozenset[str]
) -> tuple[bool, str]:
    """(authenticated, detail). Never raises; ``detail`` names ids, never addresses."""
    if not trusted:
        return False, "no trusted authserv-id configured"
    if not from_domain:
        return False, "no From domain"
    trusted_lower = {t.lower() for t in trusted}
    seen_trusted = False
    ignored: list[str] = []
    passes: list[tuple[str, dict[str, str], str]] = []
    for header in headers:
        authserv, results = _results(header)
        if authserv not in trusted_lower:
            ignored.append(authserv or "?")
            continue
        seen_trusted = True
        passes.extend((m, props, authserv) for m, r, props in results if r == "pass")
    # DMARC's own verdict first, then the aligned passes DMARC itself is built from.
    for wanted in ("dmarc", "dkim", "spf"):
        for method, props, authserv in passes:
            if method != wanted:
                continue
            if method == "dmarc":
                header_from = props.get("header.from")
                if header_from is None or _aligned(header_from, from_domain):
                    return True, f"dmarc=pass ({authserv})"
            elif method == "dkim":
                signer = props.get("header.d") or _domain_of(props.get("header.i", ""))
                if _aligned(signer, from_domain):
                    return True, f"dkim=pass aligned d={signer} ({authserv})"
            else:
                mailfrom = _domain_of(props.get("smtp.mailfrom", ""))
                if _aligned(mailfrom, from_domain):
                    return True, f"spf=pass aligned ({authserv})"
    if not seen_trusted:
        suffix = f" (ignored: {', '.join(ignored)})" if ignored else ""
        return False, f"no Authentication-Results from a trusted authserv-id{suffix}"
    return False, "no aligned pass"
