"""Every accounts example in README.md and docs/ passes `deskbridge check-config`, as a
reader would run it: the variables it names set to values of the right shape, the files
it reads absent unless deskbridge writes them itself (`webhook_secret_file`)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from deskbridge.cli.main import cli

from .helpers import rsa_private_key

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_BLOCK = re.compile(r"^```ya?ml\n(.*?)^```", re.S | re.M)
# the first key of YAML files that are not accounts files: a keys file
# (docs/security-keys.md), Kubernetes and Compose manifests, Prometheus and
# prometheus-adapter configuration (docs/deployment.md)
_OTHER_FILES = {"keys", "apiVersion", "services", "externalRules", "rules", "global"}

# what the examples' ${VARIABLES} hold in a real deployment, in shape
VALUES = {
    "TELEGRAM_BOT_TOKEN": "123456:ABC-DEF_ghi",
    "TELEGRAM_WEBHOOK_SECRET": "webhook_secret-1",
    "TELEGRAM_SECRET_TOKEN": "webhook_secret-1",
    # a Vonage application's private key (PEM), as the Dashboard hands it out
    "VONAGE_PRIVATE_KEY": rsa_private_key(),
}


def _examples() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for i, block in enumerate(_BLOCK.findall(doc.read_text())):
            name = f"{doc.relative_to(ROOT)}#{i + 1}"
            first = block.split(":", 1)[0].strip()
            if first in _OTHER_FILES or block.startswith("- "):
                # a keys file, a manifest, another tool's config, a list (a responder's
                # knowledge base, docs/responders.md): not accounts
                continue
            if not re.search(r"^accounts:", block, re.M):
                # a fragment of one account (its channels, its routing): set in a whole file
                block = "accounts:\n  acme:\n    desk: {type: sandbox}\n" + textwrap.indent(
                    textwrap.dedent(block), "    "
                )
            found.append((name, block))
    return found


EXAMPLES = _examples()


def test_the_docs_have_accounts_examples() -> None:
    assert len(EXAMPLES) >= 14
    assert any(name.startswith("README.md") for name, _ in EXAMPLES)


@pytest.mark.parametrize(("name", "text"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_every_accounts_example_passes_check_config(
    name: str, text: str, tmp_path: Path, monkeypatch
) -> None:
    for variable in set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text)):
        monkeypatch.setenv(variable, VALUES.get(variable, f"{variable.lower()}-value"))
    monkeypatch.delenv("DESKBRIDGE_REGION", raising=False)
    file = tmp_path / "accounts.yaml"
    file.write_text(text)
    result = CliRunner().invoke(cli, ["check-config", str(file)])
    assert result.exit_code == 0, result.output
    assert f"{file}: ok," in result.output
