"""JAX's persistent compilation cache, and what a first call spends its time on.

`jax.jit` keeps compiled executables in memory per input shape; the persistent cache keeps them on
disk across processes. By default JAX skips caching anything that compiled in under a second or is
small, which is every function in this tutorial, so `enable_persistent_cache` lowers both bars.
JAX reports each stage of a compilation through `jax.monitoring`; `compile_events` listens.

The persistent cache's key is computed from the lowered module, so a warm first call still traces
and lowers. `load_or_compile` adds a second tier: the compiled executable itself, serialised with
`jax.experimental.serialize_executable` under a key computed *without* tracing, so that a hit in a
fresh process goes straight to running. Loading an entry unpickles it: only point it at a
directory that nobody but you can write.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import pickle
import secrets
import stat
import struct
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jaxlib
from jax.experimental import serialize_executable
from jax.experimental.compilation_cache import compilation_cache as _persistent_cache

from funcgrad import fingerprint
from funcgrad.errors import UsageError

TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
LOWER_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"
CACHE_MISS_EVENT = "/jax/compilation_cache/cache_misses"
CACHE_RETRIEVAL_EVENT = "/jax/compilation_cache/cache_retrieval_time_sec"


EXECUTABLES_SUBDIR = "executables"


def executable_dir(cache_dir: str) -> str:
  """Where the executable tier lives inside a two-tier cache directory."""
  return os.path.join(cache_dir, EXECUTABLES_SUBDIR)


def enable_persistent_cache(directory: str) -> None:
  """Caches every compiled executable under `directory` (created if needed)."""
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


_CACHE_OPTIONS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
                  "jax_persistent_cache_min_entry_size_bytes")


@contextlib.contextmanager
def persistent_cache(directory: str) -> Iterator[None]:
  """`enable_persistent_cache(directory)` inside the block; the previous settings after it."""
  before = {name: getattr(jax.config, name) for name in _CACHE_OPTIONS}
  enable_persistent_cache(directory)
  try:
    yield
  finally:
    for name, value in before.items():
      jax.config.update(name, value)
    _persistent_cache.reset_cache()


@contextlib.contextmanager
def persistent_cache_disabled() -> Iterator[None]:
  """Compiles inside the block neither read nor write the persistent cache.

  JAX decides once per process whether the cache is in use, so the switch is followed by a reset
  of that decision on the way in and on the way out.
  """
  enabled = jax.config.jax_enable_compilation_cache
  jax.config.update("jax_enable_compilation_cache", False)
  _persistent_cache.reset_cache()
  try:
    yield
  finally:
    jax.config.update("jax_enable_compilation_cache", enabled)
    _persistent_cache.reset_cache()


@dataclasses.dataclass
class CompileEvents:
  """What JAX reported inside a `compile_events()` block.

  Attributes:
    seconds: summed duration per duration event.
    counts: occurrences per event (duration events and plain events alike).
  """

  seconds: dict[str, float] = dataclasses.field(default_factory=dict)
  counts: dict[str, int] = dataclasses.field(default_factory=dict)

  @property
  def compile_requests(self) -> int:
    """Executables JAX asked the backend for: XLA compilations plus persistent-cache loads."""
    return self.counts.get(BACKEND_COMPILE_EVENT, 0)

  @property
  def compiles(self) -> int:
    """Real XLA compilations: requests that the persistent cache did not answer."""
    return self.compile_requests - self.cache_hits

  @property
  def cache_hits(self) -> int:
    return self.counts.get(CACHE_HIT_EVENT, 0)

  @property
  def cache_misses(self) -> int:
    return self.counts.get(CACHE_MISS_EVENT, 0)

  def stage_seconds(self) -> dict[str, float]:
    """trace / lower / compile / cache-retrieval seconds (0.0 for a stage that did not run)."""
    return {name: self.seconds.get(event, 0.0) for name, event in (
        ("trace_s", TRACE_EVENT), ("lower_s", LOWER_EVENT), ("compile_s", BACKEND_COMPILE_EVENT),
        ("cache_retrieval_s", CACHE_RETRIEVAL_EVENT))}


@contextlib.contextmanager
def compile_events() -> Iterator[CompileEvents]:
  """Records JAX's compilation events inside the `with` block.

  Examples:
    >>> import jax.numpy as jnp
    >>> f = jax.jit(lambda x: x * 2)
    >>> a, b, c = jnp.ones(3), jnp.zeros(3), jnp.ones(4)
    >>> with compile_events() as events:
    ...   _ = f(a); _ = f(b); _ = f(c)  # the same shape twice, then a new shape
    >>> events.compiles
    2
  """
  events = CompileEvents()

  def on_duration(event: str, duration: float, **kwargs) -> None:
    del kwargs
    events.seconds[event] = events.seconds.get(event, 0.0) + duration
    events.counts[event] = events.counts.get(event, 0) + 1

  def on_event(event: str, **kwargs) -> None:
    del kwargs
    events.counts[event] = events.counts.get(event, 0) + 1

  jax.monitoring.register_event_duration_secs_listener(on_duration)
  jax.monitoring.register_event_listener(on_event)
  try:
    yield events
  finally:
    jax.monitoring.unregister_event_duration_listener(on_duration)
    jax.monitoring.unregister_event_listener(on_event)


def first_call_breakdown(fn: Callable[..., Any], *args: Any) -> dict[str, float | int]:
  """Times one synced call of `jax.jit(fn)` and splits it by JAX's own compile events.

  Meant for a fresh process (or after `jax.clear_caches()`): then the call traces, lowers, and
  either compiles or loads from the persistent cache.

  Returns:
    first_call_s, trace_s, lower_s, compile_s (backend time, a cache load included),
    cache_retrieval_s, compiles (real XLA compilations), cache_hits, cache_misses.
  """
  jitted = jax.jit(fn)
  with compile_events() as events:
    start = time.perf_counter()
    jax.block_until_ready(jitted(*args))
    first_call = time.perf_counter() - start
  return {"first_call_s": first_call, **events.stage_seconds(), "compiles": events.compiles,
          "cache_hits": events.cache_hits, "cache_misses": events.cache_misses}


# ----------------------------------------------------------------------------------------------
# The executable cache.

ENTRY_MAGIC = b"FGXC"
ENTRY_FORMAT = 1
ENTRY_SUFFIX = ".jexec"
MAX_ENTRY_BYTES = 1 << 30  # a bigger file is refused unread
# magic, format version, key (sha256 digest), payload length, payload sha256.
_HEADER = struct.Struct(">4sI32sQ32s")
_CONFIG_IN_KEY = ("jax_enable_x64", "jax_default_matmul_precision", "jax_numpy_dtype_promotion",
                  "jax_default_prng_impl", "jax_threefry_partitionable")


class _Refused(Exception):
  """A cache entry that is not ours, or not whole: never loaded."""


@dataclasses.dataclass(frozen=True)
class CacheInfo:
  """What `load_or_compile` did.

  Attributes:
    status: 'hit' (loaded), 'miss' (compiled and stored), 'refused' (an entry was there but
      failed its checks: compiled and replaced), or 'uncached' (compiled, cache not usable).
    key: the entry's key (hex), or None when the function could not be fingerprinted.
    path: the entry's file, or None.
    key_s: seconds spent computing the key.
    load_s: seconds spent reading, checking and loading an entry (0 when there was none).
    compile_s: seconds spent tracing, lowering and compiling (0 on a hit).
    store_s: seconds spent serialising and writing the entry.
    reason: why an entry was refused or the cache not used; None otherwise.
  """

  status: str
  key: str | None
  path: str | None
  key_s: float = 0.0
  load_s: float = 0.0
  compile_s: float = 0.0
  store_s: float = 0.0
  reason: str | None = None


def _arg_spec(leaf: Any) -> list[str]:
  aval = jax.typeof(leaf)
  sharding = leaf.sharding if isinstance(leaf, jax.Array) else None
  return [str(aval.shape), str(aval.dtype), str(aval.weak_type), repr(sharding)]


def environment_key() -> dict[str, Any]:
  """What changes a compiled executable besides the function and its inputs."""
  device = jax.devices()[0]
  return {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
          "python": sys.version.split()[0], "backend": jax.default_backend(),
          "platform_version": device.client.platform_version, "device_kind": device.device_kind,
          "devices": jax.device_count(), "processes": jax.process_count(),
          "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "config": {name: str(getattr(jax.config, name)) for name in _CONFIG_IN_KEY}}


def executable_key(fn: Callable[..., Any], args: Sequence[Any], salt: str = "") -> str:
  """The executable cache's key for `jax.jit(fn)(*args)`, computed without tracing `fn`.

  It hashes `fingerprint.function_fingerprint(fn)`; the pytree structure of `args` and each
  leaf's shape, dtype, weak type and sharding; `environment_key()` (jax, jaxlib and Python
  versions, backend, its platform version and device kind, device and process counts,
  `XLA_FLAGS`, and the config options that change tracing, x64 among them); and `salt`.

  Limits: code reached other than through the function's closure and module globals (a helper
  called as `module.helper`, a method of an object in the closure) is identified by name, not by
  content: editing such code without changing any version leaves the old key. Pass a new `salt`
  then (or clear the directory). Environment variables other than `XLA_FLAGS` and config options
  other than those listed are not in the key.

  Raises:
    fingerprint.Unfingerprintable: see `fingerprint.function_fingerprint`.
  """
  leaves, treedef = jax.tree.flatten(tuple(args))
  parts = {"format": ENTRY_FORMAT, "function": fingerprint.function_fingerprint(fn),
           "tree": str(treedef), "args": [_arg_spec(leaf) for leaf in leaves],
           "environment": environment_key(), "salt": salt}
  return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def check_cache_dir(cache_dir: str, flag: str = "--cache_dir") -> None:
  """Refuses, before any work, a cache directory that cannot be used (one line naming it).

  Raises:
    UsageError: it is a file, cannot be created or written, or others could write it.
  """
  try:
    _check_directory(cache_dir)
  except OSError as e:
    raise UsageError(f"{flag}={cache_dir}: {_cache_error(cache_dir, e).split(': ', 1)[-1]}") \
        from None


def _check_directory(cache_dir: str) -> None:
  """Creates `cache_dir` if needed; refuses one that others could write (OSError)."""
  os.makedirs(cache_dir, exist_ok=True)
  info = os.stat(cache_dir)
  if info.st_uid != os.geteuid() or info.st_mode & stat.S_IWOTH:
    raise PermissionError(0, "it is writable by other users (loading an entry runs it)")
  if not os.access(cache_dir, os.W_OK | os.X_OK):
    raise PermissionError(0, "it is not writable")


def _read_entry(path: str, key: str) -> bytes | None:
  """The checked payload of the entry at `path`; None when there is none.

  Raises:
    _Refused: the file is not a regular file, too big, truncated, not ours, or corrupt.
  """
  try:  # never follow a link; never block on a FIFO
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
  except FileNotFoundError:
    return None
  except OSError as e:
    raise _Refused(f"cannot open it ({e.strerror}; a symbolic link?)") from e
  with os.fdopen(fd, "rb") as f:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
      raise _Refused("not a regular file")
    if not _HEADER.size <= info.st_size <= MAX_ENTRY_BYTES:
      raise _Refused(f"size {info.st_size} bytes is out of bounds")
    magic, version, digest, length, checksum = _HEADER.unpack(f.read(_HEADER.size))
    if magic != ENTRY_MAGIC or version != ENTRY_FORMAT:
      raise _Refused("not a funcgrad executable entry of this format")
    if digest.hex() != key:
      raise _Refused("its header holds another key")
    if info.st_size != _HEADER.size + length:
      raise _Refused(f"truncated or padded: {info.st_size} bytes, header says "
                     f"{_HEADER.size + length}")
    payload = f.read(length)
  if len(payload) != length or hashlib.sha256(payload).digest() != checksum:
    raise _Refused("checksum mismatch")
  return payload


def _write_entry(path: str, key: str, payload: bytes) -> None:
  """Writes the entry atomically: a new file (mode 0o666 less the umask) renamed over `path`."""
  header = _HEADER.pack(ENTRY_MAGIC, ENTRY_FORMAT, bytes.fromhex(key), len(payload),
                        hashlib.sha256(payload).digest())
  temp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
  fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(header)
      f.write(payload)
    os.replace(temp, path)  # replaces a link or FIFO itself, never what it points to
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(temp)
    raise


def _serialize(compiled: jax.stages.Compiled) -> bytes:
  return pickle.dumps(serialize_executable.serialize(compiled))


def _deserialize(payload: bytes) -> jax.stages.Compiled:
  return serialize_executable.deserialize_and_load(*pickle.loads(payload))


def _cache_error(cache_dir: str, error: OSError) -> str:
  return f"cannot use executable cache directory {cache_dir!r}: {error.strerror or error}"


def load_or_compile(fn: Callable[..., Any], args: Sequence[Any], cache_dir: str, *,
                    required: bool = True,
                    salt: str = "") -> tuple[jax.stages.Compiled, CacheInfo]:
  """`jax.jit(fn)` compiled for `args`, loaded from `cache_dir` when an entry is there.

  A hit neither traces nor lowers: the key is `executable_key(fn, args, salt)`, computed from
  the function's code and the inputs' shapes (read its limits). Any other case compiles and
  stores the executable. An entry that is not a regular file, too big, truncated, written for
  another key or format, or fails its SHA-256 checksum is refused before anything is unpickled,
  and replaced. Files are written atomically (a temporary file renamed over the entry), with
  mode 0o666 narrowed by the umask.

  Loading an entry unpickles it and runs the code it holds: it trusts whoever can write
  `cache_dir`. A directory owned by another user or writable by everyone is not used.

  Args:
    fn: the function to jit.
    args: its positional arguments (pytrees of arrays); the result is called with the same.
    cache_dir: the cache directory, created if needed.
    required: when the directory cannot be used (a file, read-only, writable by others, full),
      raise (True: the user asked for the cache) or compile without it (False).
    salt: any text; change it to invalidate entries (see `executable_key`'s limits).

  Returns:
    `(compiled, info)`: the callable `jax.stages.Compiled` and a `CacheInfo`.

  Raises:
    ValueError: `required` and the directory is unusable (one line naming it and why).
  """
  start = time.perf_counter()
  try:
    key = executable_key(fn, args, salt)
  except fingerprint.Unfingerprintable as e:
    return _compile(fn, args), CacheInfo("uncached", None, None, reason=str(e))
  key_s = time.perf_counter() - start
  path, reason = os.path.join(cache_dir, key + ENTRY_SUFFIX), None
  try:
    _check_directory(cache_dir)
    start = time.perf_counter()
    payload = _read_entry(path, key)
    if payload is not None:
      compiled = _deserialize(payload)
      return compiled, CacheInfo("hit", key, path, key_s, time.perf_counter() - start)
  except _Refused as e:
    reason = f"refused {path}: {e}"
  except OSError as e:
    return _compile_uncached(fn, args, cache_dir, e, required, key, key_s)
  load_s = time.perf_counter() - start
  start = time.perf_counter()
  compiled = _compile(fn, args)
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  try:
    _write_entry(path, key, _serialize(compiled))
  except OSError as e:
    if required:
      raise UsageError(_cache_error(cache_dir, e)) from e
    return compiled, CacheInfo("uncached", key, None, key_s, load_s, compile_s,
                               reason=_cache_error(cache_dir, e))
  return compiled, CacheInfo("refused" if reason else "miss", key, path, key_s, load_s, compile_s,
                             time.perf_counter() - start, reason)


def _compile(fn: Callable[..., Any], args: Sequence[Any]) -> jax.stages.Compiled:
  return jax.jit(fn).lower(*args).compile()


def _compile_uncached(fn, args, cache_dir, error, required, key, key_s):
  if required:
    raise UsageError(_cache_error(cache_dir, error)) from error
  start = time.perf_counter()
  compiled = _compile(fn, args)
  return compiled, CacheInfo("uncached", key, None, key_s, 0.0, time.perf_counter() - start,
                             reason=_cache_error(cache_dir, error))
