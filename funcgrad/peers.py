"""Importing the peer frameworks (PyTorch, TensorFlow) only when they are asked for."""

import contextlib
import importlib
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from funcgrad.errors import UsageError

PEERS_HINT = "pip install -e '.[peers]' 'torch==2.13.0'"

_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"  # TensorFlow's and XLA's C++ logs: 0 all, 2 errors only
_JAX_DEFAULT_LEVEL = "1"  # what `import jax` sets when it is unset (so it is not the user's)


class PeerUnavailableError(UsageError, RuntimeError):
  """A peer framework (torch, tensorflow) is not installed."""


def set_native_log_level(verbose: bool) -> None:
  """TensorFlow's and XLA's C++ logs: every line (`verbose`), or errors only; a level the user
  set wins, except 1, which cannot be told from JAX's own default. Takes effect before TensorFlow
  is imported and before JAX starts its backends."""
  if os.environ.get(_LOG_LEVEL, _JAX_DEFAULT_LEVEL) == _JAX_DEFAULT_LEVEL:
    os.environ[_LOG_LEVEL] = "0" if verbose else "2"


def _native_logs_quiet() -> bool:
  try:
    return int(os.environ.get(_LOG_LEVEL, "0")) >= 1
  except ValueError:
    return False


@contextlib.contextmanager
def _native_stderr_held_back() -> Iterator[None]:
  """Holds back what is written to file descriptor 2 meanwhile, and writes it out if the block
  raises (so a failed import still says why).

  TensorFlow 2.21 logs a oneDNN notice (and absl's "before absl::InitializeLog()" line) when it
  is imported, whatever TF_CPP_MIN_LOG_LEVEL says; the one switch that silences the notice,
  TF_ENABLE_ONEDNN_OPTS=0, also changes what TensorFlow runs, and so what the tf_* rows measure.
  """
  sys.stderr.flush()
  try:
    saved = os.dup(2)
  except OSError:  # no stderr at all: nothing to hold back
    yield
    return
  with tempfile.TemporaryFile() as held:
    os.dup2(held.fileno(), 2)
    failed = False
    try:
      yield
    except BaseException:
      failed = True
      raise
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      if failed:
        held.seek(0)
        sys.stderr.write(held.read().decode("utf-8", "replace"))


def import_peer(module: str) -> Any:
  """Imports `module` ('torch' or 'tensorflow'); TensorFlow's import notices are hidden unless
  TF_CPP_MIN_LOG_LEVEL is 0 (the scripts' --verbosity sets it so when the user has not).

  Raises:
    PeerUnavailableError: naming the extra to install.
  """
  quiet = module == "tensorflow" and module not in sys.modules
  if quiet:
    set_native_log_level(verbose=False)  # before the first import
  try:
    with _native_stderr_held_back() if quiet and _native_logs_quiet() else contextlib.nullcontext():
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
