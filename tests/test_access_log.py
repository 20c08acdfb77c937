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


def test_access_log_is_skipped_where_info_is_not_written() -> None:
    """aiohttp times and formats a request for the access log only when the logger is
    enabled: at WARNING (the default) the ack path pays nothing for it."""
    logger = logging.getLogger("test.access.level")
    access = AccessLogger(logger, "")
    logger.setLevel(logging.WARNING)
    assert access.enabled is False
    logger.setLevel(logging.INFO)
    assert access.enabled is True
