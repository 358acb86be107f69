"""Sizes a user typed, refused before anything is allocated when they would not fit in memory.

The runner checks its sweep's footprint itself; this is the same check for everything else a
script allocates from a flag (`--n --d`, `--shape`, `--size`): an estimate of the peak bytes
against the host's MemAvailable, refused with one line naming the flags.
"""

import math
import os
from collections.abc import Sequence

import numpy as np

from funcgrad.errors import UsageError

MEMORY_HEADROOM = 0.5  # refuse estimates above this share of the free memory (the runner's rule)


def host_memory_bytes() -> int | None:
  """MemAvailable from /proc/meminfo (bytes); the free pages where there is no /proc."""
  try:
    with open("/proc/meminfo", encoding="ascii") as f:  # a kernel file: small, never blocks
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  try:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (OSError, ValueError):
    return None


def array_bytes(shape: Sequence[int], dtype: np.dtype | str, count: int = 1) -> int:
  """Bytes of `count` arrays of `shape` and `dtype`."""
  return count * math.prod(shape) * np.dtype(dtype).itemsize


def check_memory(need_bytes: int, what: str, available: int | None = None) -> None:
  """Refuses `what` (e.g. '--n=100000 --d=100000') when `need_bytes` would not fit.

  Args:
    need_bytes: the estimated peak bytes.
    what: the flags (and values) that asked for it, for the message.
    available: free bytes (default: the host's MemAvailable).

  Raises:
    UsageError: naming `what`, the estimate and the memory available.
  """
  available = host_memory_bytes() if available is None else available
  if available is not None and need_bytes > MEMORY_HEADROOM * available:
    raise UsageError(f"{what} needs about {need_bytes / 2**30:.3g} GiB, more than "
                     f"{MEMORY_HEADROOM:.0%} of the {available / 2**30:.3g} GiB available: "
                     "refused before allocating; pick a smaller size.")
