"""``gateway`` with the usage ledger's counting switched off: the B side of the ledger's A/B.

    python bench/noledger.py serve        # as ``gateway serve``, same tree, same settings

Only the bench runs this. The patch is at module level on purpose: worker processes are
spawned and re-import this file as their main module, so every worker gets it too.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.proxy.usage import Ledger
from gateway.runtime.cli import main


def _not_counted(self: Ledger, token_id: str, project_id: str, status: int, answered: bool) -> None:
    """Nothing: the request is not counted."""


Ledger.count = _not_counted  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
