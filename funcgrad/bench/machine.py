"""Where results were measured, built in one place for every script: the environment report,
peer versions, the allocator and thread-pool policy in use, and the rooflines."""

import importlib.metadata
import os
from collections.abc import Mapping
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


def machine_document(rooflines: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
  """The `machine` object of every script's JSON: `machine_info()`, then `extra`, then (when
  measured) each backend's roofline under `rooflines` and the CPU's fields at the top level."""
  document = {**machine_info(), **extra}
  if rooflines is not None:
    document["rooflines"] = {b: r.to_dict() for b, r in rooflines.items()}
    if "cpu" in rooflines:
      document.update(rooflines["cpu"].to_dict())
  return document
