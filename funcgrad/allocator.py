"""Choosing the process's memory allocator (glibc malloc, tcmalloc or jemalloc) via LD_PRELOAD.

Large fresh outputs page-fault under glibc malloc, which returns big blocks to the OS and maps
them anew on every call; tcmalloc and jemalloc keep them. The allocator can only be chosen when a
process starts, so `reexec_with` restarts the current command with LD_PRELOAD set.
"""

import os
import sys
from collections.abc import Sequence

from funcgrad.errors import UsageError

ALLOCATORS = ("auto", "system", "tcmalloc", "jemalloc")
_LIBRARIES = {"tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"),
              "jemalloc": ("libjemalloc.so.2",)}
_DEBIAN_PACKAGES = {"tcmalloc": "libtcmalloc-minimal4", "jemalloc": "libjemalloc2"}
SEARCH_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
               "/usr/local/lib")
_REEXEC_MARK = "FUNCGRAD_ALLOCATOR_REEXEC"


def find_library(name: str, search_dirs: Sequence[str] = SEARCH_DIRS) -> str | None:
  """The path of allocator `name`'s shared library, or None when it is not installed."""
  for folder in search_dirs:
    for library in _LIBRARIES[name]:
      path = os.path.join(folder, library)
      if os.path.exists(path):
        return path
  return None


def in_use() -> str:
  """The allocator this process actually runs with, read from its memory map."""
  try:
    with open("/proc/self/maps", encoding="utf-8") as f:
      maps = f.read()
  except OSError:
    maps = os.environ.get("LD_PRELOAD", "")
  for name, libraries in _LIBRARIES.items():
    if any(library.split(".so")[0] in maps for library in libraries):
      return name
  return "system"


def resolve(name: str, search_dirs: Sequence[str] = SEARCH_DIRS) -> tuple[str, str | None]:
  """`(allocator, library path or None)` for a requested allocator.

  'auto' is tcmalloc when installed (the measured best here, see BUILD.md), else the system's.

  Raises:
    UsageError: an unknown name, or a named allocator that is not installed (the message names
      the Debian package).
  """
  if name not in ALLOCATORS:
    raise UsageError(f"Unknown allocator {name!r}. Valid: {', '.join(ALLOCATORS)}.")
  if name == "system":
    return "system", None
  if name == "auto":
    path = find_library("tcmalloc", search_dirs)
    return ("tcmalloc", path) if path else ("system", None)
  path = find_library(name, search_dirs)
  if path is None:
    raise UsageError(f"Allocator {name!r} is not installed: apt-get install "
                     f"{_DEBIAN_PACKAGES[name]} (or pass --allocator=system).")
  return name, path


def reexec_with(name: str, argv: Sequence[str] | None = None,
                search_dirs: Sequence[str] = SEARCH_DIRS) -> str:
  """Makes this process run under allocator `name`, restarting it once with LD_PRELOAD if needed.

  Call it first thing in a script's main, before any large allocation. Returns the allocator in
  use when no restart is needed; otherwise does not return.

  Raises:
    UsageError: see `resolve`; or the restart did not take effect.
  """
  wanted, path = resolve(name, search_dirs)
  if in_use() == wanted:
    return wanted
  if os.environ.get(_REEXEC_MARK):
    raise UsageError(f"Restarted with LD_PRELOAD={path!r} but the allocator in use is still "
                     f"{in_use()!r}.")
  preload = [p for p in os.environ.get("LD_PRELOAD", "").split(":")
             if p and not any(lib.split(".so")[0] in p for libs in _LIBRARIES.values()
                              for lib in libs)]
  env = {**os.environ, _REEXEC_MARK: "1", "LD_PRELOAD": ":".join([*([path] if path else []),
                                                                   *preload])}
  argv = list(sys.argv if argv is None else argv)
  module = sys.modules["__main__"].__spec__
  command = ([sys.executable, "-m", module.name, *argv[1:]] if module is not None
             else [sys.executable, *argv])
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, command, env)
  raise AssertionError("unreachable")  # pragma: no cover
