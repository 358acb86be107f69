"""Importing the peer frameworks (PyTorch, TensorFlow) only when they are asked for."""

import importlib
import os
from typing import Any

from funcgrad.errors import UsageError

PEERS_HINT = "pip install -e '.[peers]' 'torch==2.13.0'"


class PeerUnavailableError(UsageError, RuntimeError):
  """A peer framework (torch, tensorflow) is not installed."""


def import_peer(module: str) -> Any:
  """Imports `module` ('torch' or 'tensorflow').

  Raises:
    PeerUnavailableError: naming the extra to install.
  """
  if module == "tensorflow":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before the first import: quiet C++ logs
  try:
    return importlib.import_module(module)
  except ImportError:
    raise PeerUnavailableError(
        f"The {module} peer is not installed; install the peers extra: {PEERS_HINT}.") from None


def peer_available(module: str) -> bool:
  """Whether `import_peer(module)` would succeed."""
  try:
    import_peer(module)
  except PeerUnavailableError:
    return False
  return True
