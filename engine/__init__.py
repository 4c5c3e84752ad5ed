"""rulebridge: a governed decision engine — rules over a knowledge graph decide, every step explained.

The facade's names are imported on first use (PEP 562), so a process that needs one stage only
(the execution ledger in a worker, the CLI's `--help`) does not pay for loading them all.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "Engine": "engine.api", "Explanation": "engine.api",
    "AuthError": "engine.errors", "CaseError": "engine.errors", "Diagnostic": "engine.errors",
    "LoadError": "engine.errors", "RulebridgeError": "engine.errors", "Span": "engine.errors",
    "Case": "engine.case", "Decision": "engine.decision", "Proposal": "engine.proposals",
}
__all__ = sorted(_NAMES)  # noqa: PLE0605 - computed from the table above, so the two cannot drift
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
