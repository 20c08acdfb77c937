"""Identifier normalisation: properties over arbitrary input."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskbridge.identity.phones import e164

E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("+0123456789 -().x"), max_size=25) | st.text(max_size=25),
    st.booleans(),
    st.booleans(),
)
def test_e164_never_raises_and_returns_e164_or_none(
    raw: str, international: bool, trusted: bool
) -> None:
    result = e164(raw, international=international, trusted=trusted)
    assert result is None or E164.match(result)


def test_a_possible_number_longer_than_e164_allows_is_refused() -> None:
    # found by the property above: libphonenumber calls it possible, E.164 holds 15 digits
    assert e164("4910000000000000", trusted=True) is None


@pytest.mark.parametrize(
    ("raw", "kw", "expected"),
    [
        ("+1 (202) 555-0143", {}, "+12025550143"),
        ("0049 30 901820", {}, "+4930901820"),
        ("202 555 0143", {}, None),  # no country to read it in
        ("12025550143", {"international": True}, "+12025550143"),
        ("15550002222", {"trusted": True}, "+15550002222"),  # possible, not valid: trusted only
        ("15550002222", {"international": True}, None),
    ],
)
def test_e164_examples(raw: str, kw: dict[str, bool], expected: str | None) -> None:
    assert e164(raw, **kw) == expected
