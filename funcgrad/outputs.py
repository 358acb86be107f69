"""Output files: checked before any work, written whole or not at all, with the user's umask.

A script calls `check_output_paths` with every output flag before its first measurement, so a
typo in `--output_json` fails in a second instead of throwing a finished sweep away, and two flags
naming one file (`--output_jsonl=X --output_json=X`, or through a symlink) are refused instead of
one silently replacing the other. `atomic_write` writes a temporary file beside the target and
renames it: a reader sees the old file or the new one, and a failed write leaves neither a
temporary file nor half a file.
"""

import os
import stat
import tempfile
from collections.abc import Mapping

from funcgrad.errors import UsageError


def _nearest_existing(folder: str) -> str:
  while not os.path.lexists(folder):
    folder = os.path.dirname(folder)
  return folder


def _check_folder(flag: str, path: str, folder: str) -> None:
  existing = _nearest_existing(folder)
  if not os.path.isdir(existing):
    raise UsageError(f"{flag}={path!r}: {existing!r} is not a directory, so the file cannot be "
                     "created there.")
  if not os.access(existing, os.W_OK | os.X_OK):
    action = "written in" if existing == folder else "created under"
    raise UsageError(f"{flag}={path!r}: the directory {existing!r} cannot be {action} "
                     "(permission denied).")


def check_output_path(flag: str, path: str) -> str:
  """Checks that `path` can be written as a file; returns its resolved path.

  Raises:
    UsageError: naming the flag: the path is a directory or a device, FIFO or socket, or its
      directory cannot be created or written.
  """
  if "\0" in path:
    raise UsageError(f"{flag}={path!r} contains a NUL byte.")
  resolved = os.path.realpath(path)
  if path.endswith(os.sep) or os.path.isdir(resolved):
    raise UsageError(f"{flag}={path!r} is a directory; name a file (e.g. {flag}=out/result.json).")
  if os.path.lexists(resolved) and not stat.S_ISREG(os.stat(resolved).st_mode):
    raise UsageError(f"{flag}={path!r} exists and is not a regular file (a device, FIFO or "
                     "socket); name a file.")
  _check_folder(flag, path, os.path.dirname(resolved))
  return resolved


def check_output_paths(paths: Mapping[str, str | None]) -> None:
  """Checks every output `{flag: path}` (None or '' = not asked for) before any work.

  Raises:
    UsageError: naming the flag whose path cannot be written, or the two flags that name the
      same file (after resolving symlinks).
  """
  seen: dict[str, str] = {}
  for flag, path in paths.items():
    if not path:
      continue
    resolved = check_output_path(flag, path)
    if resolved in seen:
      raise UsageError(f"{seen[resolved]} and {flag} name the same file {path!r}; one would "
                       "replace the other. Give each output its own path.")
    seen[resolved] = flag


def _umask() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def atomic_write(path: str, data: str | bytes) -> int:
  """Writes `data` to `path` atomically, mode 0o666 less the umask; returns the bytes written.

  The temporary file is removed if anything fails (including Ctrl-C), so nothing is left behind.

  Raises:
    UsageError: the file cannot be written (naming it and why).
  """
  blob = data.encode("utf-8") if isinstance(data, str) else data
  folder = os.path.dirname(os.path.abspath(path))
  try:
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  except OSError as e:
    raise UsageError(f"Cannot write {path!r}: {e.strerror}.") from None
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(blob)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600
    os.replace(tmp, path)
  except BaseException as e:
    os.unlink(tmp)
    if isinstance(e, OSError):
      raise UsageError(f"Cannot write {path!r}: {e.strerror}.") from None
    raise
  return len(blob)
