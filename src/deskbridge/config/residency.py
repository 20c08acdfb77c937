"""Data residency: a deployment serves one region and refuses accounts of any other."""

from __future__ import annotations

from deskbridge.config.accounts import AccountsFile
from deskbridge.errors import ConfigError

__all__ = ["check_region"]


def check_region(accounts: AccountsFile, region: str | None) -> None:
    """Raise ``ConfigError`` naming every account whose ``region`` is not ``region``.

    With ``region`` unset nothing is checked (accounts may then name a region or not); with
    it set, an account without a region is refused too, so no account lands in a cell by
    omission."""
    if region is None:
        return
    problems = [
        (
            f"accounts.{name}.region",
            f"is {acc.region!r}, this deployment serves {region!r}"
            if acc.region is not None
            else f"is not set; this deployment (DESKBRIDGE_REGION={region}) loads only "
            f"accounts with region: {region}",
        )
        for name, acc in accounts.accounts.items()
        if acc.region != region
    ]
    if problems:
        names = ", ".join(p[0].split(".")[1] for p in problems)
        raise ConfigError(
            f"accounts of another region, refused by this {region} deployment: {names}", problems
        )
