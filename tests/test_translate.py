"""The translator connectors against respx-mocked services."""

from __future__ import annotations

import json

import httpx
import pytest

from deskbridge.errors import PermanentError, RetryableError
from deskbridge.routing.translate import DeepL, LibreTranslate


async def test_libretranslate_detects_and_translates(respx_mock) -> None:
    route = respx_mock.post("https://lt.internal.example/translate").respond(
        200,
        json={
            "detectedLanguage": {"confidence": 90.0, "language": "es"},
            "translatedText": "Where is my order?",
        },
    )
    async with httpx.AsyncClient() as client:
        lt = LibreTranslate(client, "https://lt.internal.example/", api_key="k", region="eu")
        out = await lt.translate("¿Dónde está mi pedido?", "EN")
    assert (out.text, out.detected_source) == ("Where is my order?", "es")
    body = json.loads(route.calls[0].request.content)
    assert body == {
        "q": "¿Dónde está mi pedido?",
        "source": "auto",
        "target": "en",
        "format": "text",
        "api_key": "k",
    }


async def test_deepl_free_and_pro_hosts_and_errors(respx_mock) -> None:
    free = respx_mock.post("https://api-free.deepl.com/v2/translate").respond(
        200, json={"translations": [{"detected_source_language": "DE", "text": "Hello"}]}
    )
    async with httpx.AsyncClient() as client:
        out = await DeepL(client, "abc:fx").translate("Hallo", "en")
        assert (out.text, out.detected_source) == ("Hello", "de")
        request = free.calls[0].request
        assert request.headers["Authorization"] == "DeepL-Auth-Key abc:fx"
        assert json.loads(request.content) == {"text": ["Hallo"], "target_lang": "EN"}

        pro = respx_mock.post("https://api.deepl.com/v2/translate")
        pro.respond(429, headers={"Retry-After": "3"})
        with pytest.raises(RetryableError):
            await DeepL(client, "pro-key").translate("Hallo", "en", source="de")
        pro.respond(456, json={"message": "Quota exceeded"})
        with pytest.raises(PermanentError):
            await DeepL(client, "pro-key").translate("Hallo", "en")
        pro.respond(200, json={"translations": []})
        with pytest.raises(PermanentError, match="no translations"):
            await DeepL(client, "pro-key").translate("Hallo", "en")
