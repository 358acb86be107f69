"""Files only this user can write: cache directories, their entries, and the per-user secret key.

Loading a cache entry runs code (the executable tier unpickles, JAX's persistent tier loads
compiled machine code), so funcgrad loads only what this user alone could have written and what
carries a MAC made with this user's secret key. Every check is made on an opened descriptor
(`fstat`), never on a path looked up beforehand, and nothing is opened through a symbolic link
(`O_NOFOLLOW`) or in a way that blocks (`O_NONBLOCK`: a FIFO is refused, not waited on).

The key is 32 random bytes in `$XDG_CONFIG_HOME/funcgrad/cache.key` (default
`~/.config/funcgrad/cache.key`), created mode 0600 in a directory created 0700; both are checked
like a cache directory before the key is read.
"""

import contextlib
import errno
import hashlib
import hmac
import os
import secrets
import shlex
import stat
import time
from collections.abc import Iterator

KEY_BYTES = 32
KEY_NAME = "cache.key"
TEMP_SUFFIX = ".tmp"
STALE_TEMP_S = 3600.0  # a temporary file this old (or whose writer is gone) is removed
MIN_FREE_BYTES = 64 * 2**20  # a cache directory with less free space is refused before work
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"),
          (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class Untrusted(Exception):
  """A directory or file that someone other than this user could have written (or not a file)."""


def kind(mode: int) -> str:
  """'a directory', 'a FIFO (named pipe)', ... or 'a regular file'."""
  return next((name for test, name in _KINDS if test(mode)), "a regular file")


def check_owner_only(info: os.stat_result, path: str, what: str) -> None:
  """Raises Untrusted unless `info` belongs to this user and is not group- or other-writable.

  The message says how to fix it (`chmod go-w PATH`, or a directory of one's own).
  """
  uid = os.geteuid()
  if info.st_uid != uid:
    raise Untrusted(f"{what} {path!r} belongs to uid {info.st_uid}, not to you (uid {uid}): use "
                    "one of your own")
  if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
    who = " and ".join(w for w, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH))
                       if info.st_mode & bit)
    raise Untrusted(f"{what} {path!r} is writable by {who} (mode {stat.S_IMODE(info.st_mode):o});"
                    f" fix it with: chmod go-w {shlex.quote(path)}")


def open_directory(path: str, *, create: bool = True, dir_fd: int | None = None,
                   what: str = "directory") -> int:
  """A descriptor of directory `path` (created 0700 if missing), checked owner-only on it.

  Raises:
    Untrusted: a symbolic link, not a directory, or not owner-only.
    OSError: it cannot be created or opened (the caller names the flag).
  """
  if create:
    if dir_fd is None:
      parent = os.path.dirname(os.path.abspath(path))
      try:
        os.makedirs(parent, exist_ok=True)
      except FileExistsError:  # a file where a folder of the path should be
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), parent) from None
    with contextlib.suppress(FileExistsError):
      os.mkdir(path, 0o700, dir_fd=dir_fd)
  try:
    fd = os.open(path, _DIR_FLAGS, dir_fd=dir_fd)
  except OSError as e:
    if e.errno in (errno.ELOOP, errno.ENOTDIR):
      info = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
      raise Untrusted(f"{what} {path!r} is {kind(info.st_mode)}, not a directory") from None
    raise
  try:
    check_owner_only(os.fstat(fd), path, what)
  except BaseException:
    os.close(fd)
    raise
  return fd


def open_entry(dir_fd: int, name: str, max_bytes: int, path: str) -> tuple[int, int] | None:
  """`(descriptor, size)` of the entry `name` in `dir_fd`, or None when there is none.

  Raises:
    Untrusted: a symbolic link, FIFO, device, directory, too big, or not owner-only.
  """
  try:
    fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
  except FileNotFoundError:
    return None
  except OSError as e:
    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    raise Untrusted(f"entry {path!r} is {kind(info.st_mode)}: refused unread ({e.strerror})") \
        from None
  try:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
      raise Untrusted(f"entry {path!r} is {kind(info.st_mode)}: refused unread")
    check_owner_only(info, path, "entry")
    if info.st_size > max_bytes:
      raise Untrusted(f"entry {path!r} holds {info.st_size} bytes, more than the {max_bytes} "
                      "accepted")
  except BaseException:
    os.close(fd)
    raise
  return fd, info.st_size


def read_fd(fd: int, size: int) -> bytes:
  """Up to `size` bytes from `fd` (then closed)."""
  try:
    chunks, left = [], size
    while left > 0:
      chunk = os.read(fd, min(left, 2**24))
      if not chunk:
        break
      chunks.append(chunk)
      left -= len(chunk)
    return b"".join(chunks)
  finally:
    os.close(fd)


def _temp_name(name: str) -> str:
  return f"{name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"


def _write_all(fd: int, data: bytes) -> None:
  view = memoryview(data)
  while view:
    view = view[os.write(fd, view):]


def write_entry(dir_fd: int, name: str, data: bytes) -> None:
  """Writes `data` as entry `name` atomically, mode 0600: a temporary file, synced, then renamed
  over the entry (replacing a link or FIFO itself, never what it points to).

  On any failure (a full disk included) the temporary file is removed and no entry is left, not
  even an empty one.

  Raises:
    OSError: the write, sync or rename failed.
  """
  temp = _temp_name(name)
  fd = os.open(temp, _CREATE_FLAGS, 0o600, dir_fd=dir_fd)
  try:
    try:
      _write_all(fd, data)
      os.fsync(fd)
    finally:
      os.close(fd)
    os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(temp, dir_fd=dir_fd)
    raise


def remove(dir_fd: int, name: str) -> None:
  """Removes entry `name` (a file, link, FIFO; not a directory) if it is there."""
  with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
    os.unlink(name, dir_fd=dir_fd)


def _writer_gone(name: str) -> bool:
  parts = name.split(".")
  if len(parts) < 3 or not parts[-3].isdigit():
    return False
  try:
    os.kill(int(parts[-3]), 0)
  except ProcessLookupError:
    return True
  except (OSError, OverflowError):
    return False
  return False


def clean_stale_temps(dir_fd: int) -> list[str]:
  """Removes this user's temporary files in `dir_fd` whose writer is gone or that are older than
  `STALE_TEMP_S` (a process killed mid-write leaves one); returns their names."""
  removed, now = [], time.time()
  for name in os.listdir(dir_fd):
    if not name.endswith(TEMP_SUFFIX):
      continue
    try:
      info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
      continue
    if info.st_uid == os.geteuid() and (now - info.st_mtime > STALE_TEMP_S or _writer_gone(name)):
      remove(dir_fd, name)
      removed.append(name)
  return removed


def check_writable(dir_fd: int, min_free: int = MIN_FREE_BYTES) -> None:
  """Raises OSError unless a file can be created, written and synced in `dir_fd` and its file
  system has at least `min_free` bytes free (checked by writing, so root gets no pass)."""
  info = os.fstatvfs(dir_fd)
  free = info.f_bavail * info.f_frsize
  if free < min_free:
    raise OSError(errno.ENOSPC, f"its file system has {free // 2**20} MiB free, less than the "
                  f"{min_free // 2**20} MiB a cache needs")
  probe = _temp_name(".funcgrad-probe")
  fd = os.open(probe, _CREATE_FLAGS, 0o600, dir_fd=dir_fd)
  try:
    _write_all(fd, b"\0" * 4096)
    os.fsync(fd)
  finally:
    os.close(fd)
    os.unlink(probe, dir_fd=dir_fd)


def entries(dir_fd: int) -> Iterator[tuple[str, os.stat_result]]:
  """`(name, lstat)` of every entry of `dir_fd`, links not followed."""
  for name in sorted(os.listdir(dir_fd)):
    try:
      yield name, os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
      continue


def config_dir() -> str:
  """`$XDG_CONFIG_HOME/funcgrad`, or `~/.config/funcgrad`."""
  base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
  return os.path.join(base, "funcgrad")


def secret_key() -> bytes:
  """This user's secret key for cache MACs, created on first use.

  Raises:
    Untrusted: the key or its directory could be written by someone else, or the key is not
      exactly `KEY_BYTES` bytes (the message says which and how to fix it).
    OSError: it cannot be created.
  """
  folder = config_dir()
  dir_fd = open_directory(folder, what="key directory")
  path = os.path.join(folder, KEY_NAME)
  try:
    opened = _open_key(dir_fd, path)
    if opened is None:
      _create_key(dir_fd)
      opened = _open_key(dir_fd, path)
    if opened is None:
      raise Untrusted(f"key {path!r} vanished while it was created")
    data = read_fd(*opened)
  finally:
    os.close(dir_fd)
  if len(data) != KEY_BYTES:
    raise Untrusted(f"key {path!r} holds {len(data)} bytes, not {KEY_BYTES}: remove it and a "
                    "new one is made (cache entries made with the old key are then replaced)")
  return data


def _open_key(dir_fd: int, path: str) -> tuple[int, int] | None:
  opened = open_entry(dir_fd, KEY_NAME, KEY_BYTES, path)
  if opened is not None and os.fstat(opened[0]).st_mode & 0o077:
    mode = stat.S_IMODE(os.fstat(opened[0]).st_mode)
    os.close(opened[0])
    raise Untrusted(f"key {path!r} is readable or writable by others (mode {mode:o}); fix it "
                    f"with: chmod 600 {shlex.quote(path)}")
  return opened


def _create_key(dir_fd: int) -> None:
  temp = _temp_name(KEY_NAME)
  fd = os.open(temp, _CREATE_FLAGS, 0o600, dir_fd=dir_fd)
  try:
    try:
      _write_all(fd, secrets.token_bytes(KEY_BYTES))
      os.fsync(fd)
    finally:
      os.close(fd)
    # link, not rename: a key another process made meanwhile wins, none is overwritten
    with contextlib.suppress(FileExistsError):
      os.link(temp, KEY_NAME, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
  finally:
    remove(dir_fd, temp)


def mac(key: bytes, *parts: bytes) -> bytes:
  """HMAC-SHA256 of `parts` (each length-prefixed, so no two splits give one MAC)."""
  h = hmac.new(key, digestmod=hashlib.sha256)
  for part in parts:
    h.update(len(part).to_bytes(8, "big"))
    h.update(part)
  return h.digest()
