"""The compiled-versus-eager runner: timing core, engines, workloads, sweep and reports.

`funcgrad.bench.compare` is `funcgrad.compare` (resolved lazily, so importing one submodule
does not import the runner).
"""

import importlib
from typing import Any

_EXPORTS = {"compare": "funcgrad.bench.comparison", "Comparison": "funcgrad.bench.comparison"}

__all__ = tuple(sorted(_EXPORTS))


def __getattr__(name: str) -> Any:
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  raise AttributeError(f"module 'funcgrad.bench' has no attribute {name!r}")
