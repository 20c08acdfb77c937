"""The access log names the route template and carries the request's id."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from deskbridge.cli.process import AccessLogger


def test_access_log_carries_the_request_id_and_no_path(caplog) -> None:
    logger = logging.getLogger("test.access")
    access = AccessLogger(logger, "")
    resource = SimpleNamespace(canonical="/webhooks/{channel}/{account}")
    request = SimpleNamespace(
        method="POST", match_info=SimpleNamespace(route=SimpleNamespace(resource=resource))
    )
    response = SimpleNamespace(status=200, headers={"X-Request-Id": "abc123"})
    with caplog.at_level(logging.INFO, logger="test.access"):
        access.log(request, response, 0.0021)  # type: ignore[arg-type]
    [record] = caplog.records
    assert record.getMessage() == "POST /webhooks/{channel}/{account} 200 2.1ms"
    assert record.request_id == "abc123"
