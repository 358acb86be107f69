"""Output files: checked before any work, written whole or not at all, with the user's umask.

A script calls `check_output_paths` with every output flag before its first measurement, so a
typo in `--output_json` fails in a second instead of throwing a finished sweep away, and two flags
naming one file (`--output_jsonl=X --output_json=X`, or through a symlink) are refused instead of
one silently replacing the other. `atomic_write` writes a temporary file beside the target and
renames it: a reader sees the old file or the new one, and a failed write leaves neither a
temporary file nor half a file.
"""

import contextlib
import errno
import json
import math
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

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


# ----------------------------------------------------------------------------------------------
# Strict JSON, links never followed, JSONL that survives partial lines and full disks.

NON_FINITE_FIELD = "non_finite"  # a row's {field: 'nan' | 'inf' | '-inf'} for the nulls it holds


def _finite(value: Any, notes: dict[str, str], field: str) -> Any:
  if isinstance(value, float) and not math.isfinite(value):
    notes[field] = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return None
  if isinstance(value, dict):
    return strict(value)
  if isinstance(value, (list, tuple)):
    return [_finite(v, notes, field) for v in value]
  return value


def strict(value: Any) -> Any:
  """`value` with every NaN and infinity replaced by None, so that strict JSON parsers read it;
  each dict holding such a value gains `"non_finite": {field: "nan" | "inf" | "-inf"}`."""
  if isinstance(value, (list, tuple)):
    return [strict(v) for v in value]
  if not isinstance(value, dict):
    return _finite(value, {}, "")
  notes: dict[str, str] = {}
  out = {k: _finite(v, notes, str(k)) for k, v in value.items()}
  if notes:
    out[NON_FINITE_FIELD] = {**out.get(NON_FINITE_FIELD, {}), **notes}
  return out


def dumps(document: Any, indent: int | None = 2) -> str:
  """Strict JSON text (no NaN or Infinity, see `strict`)."""
  return json.dumps(strict(document), indent=indent, allow_nan=False)


def _refuse_link(flag: str, path: str, error: OSError) -> UsageError:
  if error.errno == errno.ELOOP:
    return UsageError(f"{flag}={path!r} is a symbolic link: refused (it could point at any of your "
                      "files); name the file itself.")
  return UsageError(f"{flag}={path!r}: cannot open it for writing ({error.strerror}).")


def open_append(flag: str, path: str) -> int:
  """A descriptor appending to `path` (created 0o666 less the umask), never through a symbolic
  link and never blocking on a FIFO.

  Raises:
    UsageError: naming the flag: a link, not a regular file, or it cannot be opened.
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  try:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                 | os.O_CLOEXEC, 0o666)
  except OSError as e:
    raise _refuse_link(flag, path, e) from None
  if not stat.S_ISREG(os.fstat(fd).st_mode):
    os.close(fd)
    raise UsageError(f"{flag}={path!r} is not a regular file (a device, FIFO or socket); name a "
                     "file.")
  os.set_blocking(fd, True)
  return fd


def _ends_without_newline(path: str) -> bool:
  try:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
  except OSError:
    return False
  try:
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"
  finally:
    os.close(fd)


class JsonlFile:
  """Appends one strict-JSON line per row, synced at once; a row never joins a partial line.

  A row whose write fails (a full disk) is cut back off the file, so the file holds whole rows
  only, and the failure is one `UsageError` line naming the flag.
  """

  def __init__(self, path: str, flag: str = "--output_jsonl"):
    self.path, self.flag, self.rows = path, flag, 0
    self._fd: int | None = open_append(flag, path)
    self._newline = _ends_without_newline(path)

  def write(self, row: dict[str, Any]) -> None:
    """Appends `row`.

    Raises:
      UsageError: the line could not be written whole (naming the flag and why).
    """
    if self._fd is None:
      raise UsageError(f"{self.flag}={self.path!r} is closed.")
    line = ("\n" if self._newline else "") + dumps(row, indent=None) + "\n"
    size = os.fstat(self._fd).st_size
    try:
      _write_all(self._fd, line.encode("utf-8"))
      os.fsync(self._fd)
    except BaseException as e:
      with contextlib.suppress(OSError):
        os.ftruncate(self._fd, size)  # no half row
      if isinstance(e, OSError):
        raise UsageError(f"{self.flag}={self.path!r}: cannot append row {self.rows + 1} "
                         f"({e.strerror}); the file keeps {self.rows} whole rows of this run.") \
            from None
      raise
    self._newline = False
    self.rows += 1

  def close(self) -> None:
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None


def _write_all(fd: int, data: bytes) -> None:
  view = memoryview(data)
  while view:
    view = view[os.write(fd, view):]


# ----------------------------------------------------------------------------------------------
# The outputs of a run.

Render = Callable[[Sequence[Any], bool], "str | bytes"]


class RunOutputs:
  """Every finished row of a run, written to every requested output however the run ends.

  Rows stream to the JSONL file as they finish (`add`); the whole-file outputs (JSON, CSV, a
  plot...) are rendered from the rows and written atomically by `finish`, on a normal end, or by
  `interrupted` on Ctrl-C, SIGTERM or SIGHUP (JSON then says `"complete": false`). An output that
  fails does not stop the others: its one-line message is kept in `failures`.

  Args:
    files: `{flag: (path, render)}` for the whole-file outputs (None paths are skipped);
      `render(rows, complete)` returns the file's text or bytes.
    jsonl: `(flag, path)` of the streamed output, or None.
    to_row: turns a row object into the JSONL line's dict.
    noun: what a row is, for the interrupted line (`kept 3 finished targets in ...`).
  """

  def __init__(self, files: Mapping[str, tuple[str | None, Render]],
               jsonl: tuple[str, str | None] | None = None,
               to_row: Callable[[Any], dict[str, Any]] = lambda r: r.to_dict(),
               noun: str = "row"):
    self.rows: list[Any] = []
    self._noun = noun
    self.failures: list[str] = []
    self._files = {flag: (path, render) for flag, (path, render) in files.items() if path}
    self._to_row = to_row
    self._jsonl = JsonlFile(jsonl[1], jsonl[0]) if jsonl and jsonl[1] else None

  def add(self, row: Any) -> None:
    """Keeps `row` and appends it to the JSONL output (a failure is kept, not raised)."""
    self.rows.append(row)
    if self._jsonl is not None:
      try:
        self._jsonl.write(self._to_row(row))
      except UsageError as e:
        self._fail(str(e))
        self._jsonl.close()
        self._jsonl = None

  def _fail(self, message: str) -> None:
    self.failures.append(message.splitlines()[0] if message else "an output failed")

  def finish(self, complete: bool = True) -> list[str]:
    """Writes every whole-file output from the rows so far; returns the paths written."""
    written = []
    for flag, (path, render) in self._files.items():
      try:
        atomic_write(path, render(self.rows, complete))
        written.append(path)
      except UsageError as e:
        self._fail(f"{flag}: {e}")
      except Exception as e:  # noqa: BLE001 - one output's bug must not lose the others
        self._fail(f"{flag}={path!r}: not written ({type(e).__name__}: {e})")
    if self._jsonl is not None:
      written.append(self._jsonl.path)
      self._jsonl.close()
    return written

  def interrupted(self) -> str:
    """Writes what finished (JSON marked incomplete); returns what to say about it."""
    written = self.finish(complete=False)
    rows = f"{len(self.rows)} finished {self._noun}{'s' if len(self.rows) != 1 else ''}"
    if not written:
      return f"{rows}, no output asked for" if not self._files and not self.failures else \
          f"{rows}; {'; '.join(self.failures) or 'nothing was written'}"
    failed = f" ({'; '.join(self.failures)})" if self.failures else ""
    return f"kept {rows} in {', '.join(written)}{failed}"

  def report_failures(self, status: int) -> int:
    """Prints one `error:` line per failed output; returns 1 if any failed, else `status`."""
    for message in self.failures:
      sys.stderr.write(f"error: {message}\n")
    return 1 if self.failures else status
