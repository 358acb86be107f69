"""Choosing the process's memory allocator (glibc, tcmalloc, jemalloc or mimalloc) via LD_PRELOAD.

Large fresh outputs page-fault under glibc malloc, which returns big blocks to the OS and maps
them anew on every call; tcmalloc, jemalloc and mimalloc keep them. The allocator can only be
chosen when a process starts, so `reexec_with` restarts the current command with LD_PRELOAD set.

Where each comes from: tcmalloc and jemalloc from the system's packages (Debian
`libtcmalloc-minimal4`, `libjemalloc2`); mimalloc from pip, through the `fast` extra
(`pip install -e '.[fast]'` installs the `cmeel-mimalloc` wheel, MIT-licensed, which puts
`libmimalloc.so` under `site-packages/cmeel.prefix/lib`), or from the system's `libmimalloc`.
"""

import importlib.metadata
import os
import sys
from collections.abc import Mapping, Sequence

from funcgrad.errors import UsageError

ALLOCATORS = ("auto", "system", "tcmalloc", "jemalloc", "mimalloc")
# What `auto` tries, fastest first: measured side by side on this project's 2-core machine at
# muladd_sum 4000x4000 and 3x4 (the table is in BUILD.md, "The memory allocator"). mimalloc and
# tcmalloc tied within noise, mimalloc ahead at 4000x4000 in both runs; it goes first because
# pip installs it, so every machine with the README's install runs the same allocator.
AUTO_ORDER = ("mimalloc", "tcmalloc", "jemalloc")
_LIBRARIES = {"tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"),
              "jemalloc": ("libjemalloc.so.2",),
              "mimalloc": ("libmimalloc.so.3", "libmimalloc.so.2", "libmimalloc.so")}
# Allocators that pip installs: name -> (distribution, its file that is the library).
WHEELS = {"mimalloc": ("cmeel-mimalloc", "cmeel.prefix/lib/libmimalloc.so")}
_INSTALL_HINTS = {"tcmalloc": "apt-get install libtcmalloc-minimal4",
                  "jemalloc": "apt-get install libjemalloc2",
                  "mimalloc": "pip install -e '.[fast]'"}
SEARCH_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
               "/usr/local/lib")
_REEXEC_MARK = "FUNCGRAD_ALLOCATOR_REEXEC"


def wheel_library(name: str,
                  wheels: Mapping[str, tuple[str, str]] = WHEELS) -> str | None:
  """The path of allocator `name`'s library installed by pip, or None.

  The path is read from the distribution's own file list (`importlib.metadata`), so it follows
  whichever environment this Python runs in.
  """
  if name not in wheels:
    return None
  distribution, relative = wheels[name]
  try:
    dist = importlib.metadata.distribution(distribution)
  except importlib.metadata.PackageNotFoundError:
    return None
  if not any(str(f) == relative for f in dist.files or ()):
    return None
  path = os.path.realpath(dist.locate_file(relative))
  return path if os.path.isfile(path) else None


def find_library(name: str, search_dirs: Sequence[str] = SEARCH_DIRS,
                 wheels: Mapping[str, tuple[str, str]] = WHEELS) -> str | None:
  """The path of allocator `name`'s shared library (pip's first, then the system's), or None."""
  path = wheel_library(name, wheels)
  if path is not None:
    return path
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


def resolve(name: str, search_dirs: Sequence[str] = SEARCH_DIRS,
            wheels: Mapping[str, tuple[str, str]] = WHEELS) -> tuple[str, str | None]:
  """`(allocator, library path or None)` for a requested allocator.

  'auto' is the first of `AUTO_ORDER` that is installed, else the system's.

  Raises:
    UsageError: an unknown name, or a named allocator that is not installed (the message says
      how to install it).
  """
  if name not in ALLOCATORS:
    raise UsageError(f"Unknown allocator {name!r}. Valid: {', '.join(ALLOCATORS)}.")
  if name == "system":
    return "system", None
  if name == "auto":
    for candidate in AUTO_ORDER:
      path = find_library(candidate, search_dirs, wheels)
      if path is not None:
        return candidate, path
    return "system", None
  path = find_library(name, search_dirs, wheels)
  if path is None:
    raise UsageError(f"Allocator {name!r} is not installed: {_INSTALL_HINTS[name]} "
                     "(or pass --allocator=system).")
  return name, path


def _is_allocator(path: str) -> bool:
  return any(lib.split(".so")[0] in os.path.basename(path)
             for libs in _LIBRARIES.values() for lib in libs)


def reexec_with(name: str, argv: Sequence[str] | None = None,
                search_dirs: Sequence[str] = SEARCH_DIRS,
                wheels: Mapping[str, tuple[str, str]] = WHEELS,
                environ: Mapping[str, str] | None = None) -> str:
  """Makes this process run under allocator `name` with `environ` set, restarting it once with
  LD_PRELOAD and those variables if needed.

  Call it first thing in a script's main, before any large allocation. `environ` holds settings
  that libraries read when they load (`thread_pools.environment`). Returns the allocator in use
  when no restart is needed; otherwise does not return.

  Raises:
    UsageError: see `resolve`; or the restart did not take effect.
  """
  wanted, path = resolve(name, search_dirs, wheels)
  environ = dict(environ or {})
  if in_use() == wanted and all(os.environ.get(k) == v for k, v in environ.items()):
    return wanted
  # The mark holds the pid that restarted (execve keeps it): one inherited from a parent process
  # is not this process's restart.
  if os.environ.get(_REEXEC_MARK) == str(os.getpid()):
    raise UsageError(f"Restarted with LD_PRELOAD={path!r} but the allocator in use is still "
                     f"{in_use()!r}.")
  preload = [p for p in os.environ.get("LD_PRELOAD", "").split(":") if p and not _is_allocator(p)]
  env = {**os.environ, **environ, _REEXEC_MARK: str(os.getpid()),
         "LD_PRELOAD": ":".join([*([path] if path else []), *preload])}
  argv = list(sys.argv if argv is None else argv)
  module = sys.modules["__main__"].__spec__
  command = ([sys.executable, "-m", module.name, *argv[1:]] if module is not None
             else [sys.executable, *argv])
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, command, env)
  raise AssertionError("unreachable")  # pragma: no cover
