"""Machine info for results: the environment report, peer versions, and the allocator and
thread-pool policy in use."""

import importlib.metadata
import os
from typing import Any

from funcgrad import allocator, thread_pools
from funcgrad.env import environment_report

_PEERS = ("torch", "tensorflow-cpu", "tensorflow")


def machine_info() -> dict[str, Any]:
  """The environment report as data, with peer framework versions and LD_PRELOAD."""
  info = environment_report().to_dict()
  peers = {}
  for name in _PEERS:
    try:
      peers[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      continue
  info["peers"] = peers
  info["allocator"] = allocator.in_use()
  info["thread_pools"] = thread_pools.in_use()
  info["ld_preload"] = os.environ.get("LD_PRELOAD") or None
  return info
