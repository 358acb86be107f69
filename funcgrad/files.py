"""Opening a file a user named, with bounds: a regular file, no larger than a stated cap.

A path can name a FIFO (opening it for reading waits for a writer, forever), a device such as
`/dev/zero` (reading it never ends), a directory, or a multi-GB file. Each reader in funcgrad
opens through `open_regular`, which refuses all of these with one line before reading a byte.
"""

import os
import stat
from typing import BinaryIO

from funcgrad.errors import UsageError

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
  return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _check(path: str, info: os.stat_result, max_bytes: int, what: str) -> None:
  if not stat.S_ISREG(info.st_mode):
    raise UsageError(f"{what} {path!r} is {_kind(info.st_mode)}, not a regular file: refused "
                     "without reading it.")
  if info.st_size > max_bytes:
    raise UsageError(f"{what} {path!r} holds {info.st_size} bytes, more than the {max_bytes} "
                     "accepted: refused without reading it.")


def check_regular(path: str, max_bytes: int, what: str = "File") -> os.stat_result:
  """Stats `path` (following symlinks) and refuses anything but a regular file of at most
  `max_bytes`; opens nothing.

  Raises:
    UsageError: naming the file and what is wrong (missing, a FIFO, a device, too large...).
  """
  try:
    info = os.stat(path)
  except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
    reason = e.strerror if isinstance(e, OSError) else str(e)
    raise UsageError(f"Cannot read {what.lower()} {path!r}: {reason}.") from None
  _check(path, info, max_bytes, what)
  return info


def open_regular(path: str, max_bytes: int, what: str = "File") -> BinaryIO:
  """Opens `path` for binary reading if it is a regular file of at most `max_bytes`.

  The path is stat-ed before it is opened, so a FIFO or a device is refused without being
  opened; it is then opened non-blocking and checked again, in case it was swapped in between.

  Raises:
    UsageError: naming the file and what is wrong.
  """
  before = check_regular(path, max_bytes, what)
  try:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
  except OSError as e:
    raise UsageError(f"Cannot read {what.lower()} {path!r}: {e.strerror}.") from None
  try:
    after = os.fstat(fd)
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
      raise UsageError(f"{what} {path!r} was replaced while it was being opened.")
    _check(path, after, max_bytes, what)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")
  except BaseException:
    os.close(fd)
    raise


def read_regular(path: str, max_bytes: int, what: str = "File") -> bytes:
  """The bytes of `path`, a regular file of at most `max_bytes` (at most that many are read,
  even if the file grows meanwhile).

  Raises:
    UsageError: naming the file and what is wrong.
  """
  with open_regular(path, max_bytes, what) as f:
    data = f.read(max_bytes + 1)
  if len(data) > max_bytes:
    raise UsageError(f"{what} {path!r} grew past {max_bytes} bytes while it was read.")
  return data


def printable(text: str) -> str:
  """`text` with control characters (C0, DEL, C1: terminal escapes among them) written as
  `\\xNN`, so that text read from a file cannot move the cursor, retitle or clear a terminal."""
  return "".join(c if c.isprintable() or c == " " else
                 (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}") for c in text)
