from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

__all__ = ["RawRequest"]


@dataclass(frozen=True, slots=True)
class RawRequest:
    """An inbound HTTP request as adapters see it (they never see aiohttp).

    ``headers`` is looked up by lower-case name (the gateway passes aiohttp's
    case-insensitive view; tests pass dicts with lower-case keys). ``body`` is the exact
    bytes received, which is what signatures are computed over.
    """

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def scrubbed(self, headers: AbstractSet[str], query: AbstractSet[str]) -> RawRequest:
        """A copy without the named headers (lower-case names, matched in any case) and
        query parameters (matched exactly), every value of each: what may be stored.
        ``self`` when it carries none of them. Headers stay case-insensitive."""
        if isinstance(self.headers, CIMultiDictProxy | CIMultiDict):
            # a case-insensitive mapping (the gateway's): a lookup per named header, not
            # a lower-cased copy of every header name (~4 us of each ack)
            drop_h = any(name in self.headers for name in headers)
        else:
            drop_h = bool(headers) and any(k.lower() in headers for k in self.headers)
        drop_q = bool(query) and any(k in query for k in self.query)
        if not drop_h and not drop_q:
            return self
        kept_h: Mapping[str, str] = self.headers
        if drop_h:
            ci = CIMultiDict(self.headers)
            for name in headers:
                ci.popall(name, None)
            kept_h = CIMultiDictProxy(ci)
        kept_q: Mapping[str, str] = self.query
        if drop_q:
            md = MultiDict(self.query)
            for name in query:
                md.popall(name, None)
            kept_q = MultiDictProxy(md)
        # not dataclasses.replace, which inspects the fields on every call
        return RawRequest(self.method, self.path, kept_q, kept_h, self.body)
