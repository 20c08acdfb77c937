"""Security probes against running deskbridge processes: ``make security``
(``.venv/bin/python bench/security.py``).

Starts ``serve`` and ``worker`` in production mode on 127.0.0.1 (its own redis-server in a
temporary directory, never the shared Redis; fake Zendesk and Telegram APIs), runs every
probe of ``tests/security/probes.py`` (``--mode short``: what ``make test`` runs) and
prints a table. Exit code 1 when a protection does not hold (a probe marked pending only
reports), 2 when the processes could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.faults.harness import HarnessError  # noqa: E402
from tests.security.probes import run_probes  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["short", "long"], default="long")
    args = parser.parse_args()
    try:
        outcomes = asyncio.run(run_probes(short=args.mode == "short"))
    except HarnessError as exc:
        print(f"security: the processes could not run: {exc}", file=sys.stderr)
        return 2
    print("| probe | verdict | detail |")
    print("|---|---|---|")
    for o in outcomes:
        print(f"| {o.name} | {o.verdict} | {o.detail.replace('|', '/')} |")
    failed = [o for o in outcomes if not o.ok and not o.pending]
    pending = [o for o in outcomes if not o.ok and o.pending]
    print(
        f"\n{len(outcomes) - len(failed) - len(pending)} held, {len(failed)} failed, "
        f"{len(pending)} pending"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
