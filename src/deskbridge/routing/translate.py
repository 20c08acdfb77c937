"""Optional translation for agents: a translator interface and two connectors.

Off by default and opt-in per account, since it sends message text to a third party:
``LibreTranslate`` (self-hosted: the text stays in the deployment's region) and
``DeepL`` (``api-free.deepl.com`` for keys ending in ``:fx``, else ``api.deepl.com``).
Errors follow ``deskbridge.http.classify``: 429/5xx/timeouts retryable, other 4xx
permanent (a bad key, an unsupported language).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from deskbridge.errors import PermanentError
from deskbridge.http import classify, transport_error

__all__ = ["DeepL", "LibreTranslate", "Translation", "Translator"]


@dataclass(frozen=True, slots=True)
class Translation:
    text: str
    detected_source: str | None = None
    """ISO 639-1, lower case, when the service said."""


class Translator(Protocol):
    name: str
    region: str | None
    """Where the text goes (``check-config`` warns when it differs from the account's)."""

    async def translate(
        self, text: str, target: str, *, source: str | None = None
    ) -> Translation: ...


def _json(resp: httpx.Response, what: str) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        raise PermanentError(f"{what}: the answer is not JSON", status=resp.status_code) from None
    if not isinstance(data, dict):
        raise PermanentError(f"{what}: unexpected answer", status=resp.status_code)
    return data


class LibreTranslate:
    """``POST {base_url}/translate`` with ``q``, ``source`` (``auto``), ``target``,
    ``format: text`` and the optional ``api_key``."""

    name = "libretranslate"

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        *,
        api_key: str | None = None,
        region: str | None = None,
    ) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + "/translate"
        self._key = api_key
        self.region = region

    async def translate(self, text: str, target: str, *, source: str | None = None) -> Translation:
        what = "libretranslate translate"
        body: dict[str, Any] = {
            "q": text,
            "source": (source or "auto").lower(),
            "target": target.lower(),
            "format": "text",
        }
        if self._key:
            body["api_key"] = self._key
        try:
            resp = await self._client.post(self._url, json=body)
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from exc
        classify(resp, what=what)
        data = _json(resp, what)
        translated = data.get("translatedText")
        if not isinstance(translated, str):
            raise PermanentError(f"{what}: no translatedText", status=resp.status_code)
        detected = data.get("detectedLanguage")
        lang = detected.get("language") if isinstance(detected, dict) else None
        return Translation(translated, lang.lower() if isinstance(lang, str) else source)


class DeepL:
    """``POST /v2/translate`` with ``Authorization: DeepL-Auth-Key``, a JSON body of
    ``text`` (a list) and ``target_lang``; answers ``translations[].text`` and
    ``detected_source_language``."""

    name = "deepl"

    def __init__(
        self,
        client: httpx.AsyncClient,
        api_key: str,
        *,
        base_url: str | None = None,
        region: str | None = "eu",
    ) -> None:
        self._client = client
        self._key = api_key
        free = api_key.endswith(":fx")
        base = base_url or ("https://api-free.deepl.com" if free else "https://api.deepl.com")
        self._url = base.rstrip("/") + "/v2/translate"
        self.region = region

    async def translate(self, text: str, target: str, *, source: str | None = None) -> Translation:
        what = "deepl translate"
        body: dict[str, Any] = {"text": [text], "target_lang": target.upper()}
        if source:
            body["source_lang"] = source.upper()
        try:
            resp = await self._client.post(
                self._url, json=body, headers={"Authorization": f"DeepL-Auth-Key {self._key}"}
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, what=what) from exc
        # DeepL answers 456 when the account's character quota is used up: not a retry
        classify(resp, what=what)
        items = _json(resp, what).get("translations")
        if not isinstance(items, list) or not items or not isinstance(items[0], dict):
            raise PermanentError(f"{what}: no translations", status=resp.status_code)
        first = items[0]
        translated = first.get("text")
        if not isinstance(translated, str):
            raise PermanentError(f"{what}: no text", status=resp.status_code)
        detected = first.get("detected_source_language")
        return Translation(translated, detected.lower() if isinstance(detected, str) else source)
