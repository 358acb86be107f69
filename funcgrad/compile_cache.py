"""JAX's persistent compilation cache, and what a first call spends its time on.

`jax.jit` keeps compiled executables in memory per input shape; the persistent cache keeps them on
disk across processes. By default JAX skips caching anything that compiled in under a second or is
small, which is every function in this tutorial, so `enable_persistent_cache` lowers both bars.
JAX reports each stage of a compilation through `jax.monitoring`; `compile_events` listens.

The persistent cache's key is computed from the lowered module, so a warm first call still traces
and lowers. `load_or_compile` adds a second tier: the compiled executable itself, serialised with
`jax.experimental.serialize_executable` under a key computed *without* tracing, so that a hit in a
fresh process goes straight to running. Loading an entry runs code (the executable tier unpickles;
the persistent tier loads machine code), so both tiers take only owner-only files from an
owner-only directory, each authenticated with a MAC made with a per-user secret key
(`funcgrad.owner_only`), checked on the opened file before anything is loaded.
"""

import contextlib
import dataclasses
import hashlib
import hmac
import json
import os
import pickle
import shlex
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

from funcgrad import fingerprint, owner_only
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
  """Caches every compiled executable under `directory` (created if needed), each entry checked
  and authenticated as the executable tier's are (`check_cache_dir` says what is refused)."""
  _install_checked_persistent_tier()
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


_CACHE_OPTIONS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
                  "jax_persistent_cache_min_entry_size_bytes")


@contextlib.contextmanager
def settings_restored(names: Sequence[str]) -> Iterator[None]:
  """JAX's settings `names` as they were before the block, after it. JAX decides once per
  process whether the persistent cache is in use, so that decision is reset on the way out."""
  before = {name: getattr(jax.config, name) for name in names}
  try:
    yield
  finally:
    for name, value in before.items():
      if getattr(jax.config, name) != value:
        jax.config.update(name, value)
    _persistent_cache.reset_cache()


@contextlib.contextmanager
def persistent_cache(directory: str) -> Iterator[None]:
  """`enable_persistent_cache(directory)` inside the block; the previous settings after it."""
  with settings_restored(_CACHE_OPTIONS):
    enable_persistent_cache(directory)
    yield


@contextlib.contextmanager
def persistent_cache_disabled() -> Iterator[None]:
  """Compiles inside the block neither read nor write the persistent cache (the in-use decision
  is reset on the way in too)."""
  with settings_restored(("jax_enable_compilation_cache",)):
    jax.config.update("jax_enable_compilation_cache", False)
    _persistent_cache.reset_cache()
    yield


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
ENTRY_FORMAT = 2  # 2: a keyed MAC (format 1's plain SHA-256 is refused, then replaced)
ENTRY_SUFFIX = ".jexec"
MAX_ENTRY_BYTES = 1 << 30  # a bigger file is refused unread
# magic, format version, key (sha256 digest), payload length, HMAC-SHA256 of all that + payload.
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
      failed its checks or did not load: compiled and replaced), or 'uncached' (compiled, cache
      not usable).
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


def _check_tier(dir_fd: int, path: str, skip: str | None = None) -> None:
  """Refuses a tier holding an entry that is not an owner-only regular file; removes empty
  persistent entries (a full disk's leftovers) and stale temporary files."""
  owner_only.clean_stale_temps(dir_fd)
  for name, info in owner_only.entries(dir_fd):
    if name == skip:
      continue
    entry = os.path.join(path, name)
    if not stat.S_ISREG(info.st_mode):
      raise owner_only.Untrusted(f"entry {entry!r} is {owner_only.kind(info.st_mode)}, not a "
                                 f"cache file: remove it (rm -r {shlex.quote(entry)})")
    owner_only.check_owner_only(info, entry, "entry")
    if info.st_size == 0 and name.endswith(PERSISTENT_SUFFIX):
      owner_only.remove(dir_fd, name)


def check_cache_dir(cache_dir: str, flag: str = "--cache_dir") -> None:
  """Refuses, before any work, a cache directory that cannot be used safely (one line naming
  `flag`): both tiers (`cache_dir` itself, JAX's persistent tier, and `cache_dir/executables`)
  are created 0700 if missing, must belong to this user and not be group- or other-writable,
  must be writable with at least `owner_only.MIN_FREE_BYTES` free, and every entry in them must
  be an owner-only regular file. The per-user secret key is checked (or created) too. Empty
  persistent entries and stale temporary files are removed.

  Raises:
    UsageError: `{flag}={cache_dir}: <what is wrong and how to fix it>`.
  """
  try:
    top = owner_only.open_directory(cache_dir, what="cache directory")
    try:
      owner_only.check_writable(top)
      _check_tier(top, cache_dir, skip=EXECUTABLES_SUBDIR)
      sub = owner_only.open_directory(EXECUTABLES_SUBDIR, dir_fd=top, what="cache directory")
      try:
        owner_only.check_writable(sub)
        _check_tier(sub, executable_dir(cache_dir))
      finally:
        os.close(sub)
    finally:
      os.close(top)
    owner_only.secret_key()
  except (OSError, owner_only.Untrusted) as e:
    raise UsageError(f"{flag}={cache_dir}: {_reason(e)}.") from None


def check_parent_dir(path: str, flag: str = "--cache_dir") -> None:
  """Refuses (one line naming `flag`) a directory holding cache tiers that is not this user's
  alone: whoever can write it can swap a tier for their own.

  Raises:
    UsageError: `{flag}={path}: <what is wrong and how to fix it>`.
  """
  try:
    os.close(owner_only.open_directory(path, what="cache directory"))
  except (OSError, owner_only.Untrusted) as e:
    raise UsageError(f"{flag}={path}: {_reason(e)}.") from None


def _reason(error: BaseException) -> str:
  if isinstance(error, OSError):
    where = f" ({error.filename})" if error.filename else ""
    return f"cannot use it{where}: {error.strerror or error}"
  return str(error)


def _entry_header(key: str, length: int, mac: bytes = b"\0" * 32) -> bytes:
  return _HEADER.pack(ENTRY_MAGIC, ENTRY_FORMAT, bytes.fromhex(key), length, mac)


def _read_entry(dir_fd: int, name: str, path: str, key: str, secret: bytes) -> bytes | None:
  """The authenticated payload of the entry `name`; None when there is none.

  Raises:
    _Refused: not an owner-only regular file, too big, truncated, for another key or format, or
      its MAC does not verify (nothing is unpickled then).
  """
  try:
    opened = owner_only.open_entry(dir_fd, name, MAX_ENTRY_BYTES, path)
  except owner_only.Untrusted as e:
    raise _Refused(str(e)) from None
  if opened is None:
    return None
  fd, size = opened
  blob = owner_only.read_fd(fd, size)
  if len(blob) < _HEADER.size:
    raise _Refused(f"size {len(blob)} bytes is shorter than a header")
  magic, version, digest, length, mac = _HEADER.unpack(blob[:_HEADER.size])
  if magic != ENTRY_MAGIC or version != ENTRY_FORMAT:
    raise _Refused("not a funcgrad executable entry of this format")
  if digest.hex() != key:
    raise _Refused("its header holds another key")
  if len(blob) != _HEADER.size + length:
    raise _Refused(f"truncated or padded: {len(blob)} bytes, header says {_HEADER.size + length}")
  payload = blob[_HEADER.size:]
  want = owner_only.mac(secret, _entry_header(key, length)[:-32], payload)
  if not hmac.compare_digest(mac, want):
    raise _Refused("its MAC does not verify (not written by you with your key, or damaged)")
  return payload


def _write_entry(dir_fd: int, name: str, key: str, secret: bytes, payload: bytes) -> None:
  header = _entry_header(key, len(payload))
  mac = owner_only.mac(secret, header[:-32], payload)
  owner_only.write_entry(dir_fd, name, header[:-32] + mac + payload)


def _serialize(compiled: jax.stages.Compiled) -> bytes:
  return pickle.dumps(serialize_executable.serialize(compiled))


def _deserialize(payload: bytes) -> jax.stages.Compiled:
  return serialize_executable.deserialize_and_load(*pickle.loads(payload))


def _load(payload: bytes) -> jax.stages.Compiled:
  try:
    return _deserialize(payload)
  except Exception as e:  # noqa: BLE001 - a bad pickle or executable of ours: refuse, replace
    first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
    raise _Refused(f"it does not load ({type(e).__name__}: {first})") from None


def _cache_error(cache_dir: str, error: BaseException) -> str:
  return f"cannot use executable cache directory {cache_dir!r}: {_reason(error)}"


def load_or_compile(fn: Callable[..., Any], args: Sequence[Any], cache_dir: str, *,
                    required: bool = True,
                    salt: str = "") -> tuple[jax.stages.Compiled, CacheInfo]:
  """`jax.jit(fn)` compiled for `args`, loaded from `cache_dir` when an entry is there.

  A hit neither traces nor lowers: the key is `executable_key(fn, args, salt)`, computed from
  the function's code and the inputs' shapes (read its limits). Any other case compiles and
  stores the executable. The directory must be this user's and writable by nobody else; an entry
  is opened without following links or blocking, and refused before anything is unpickled unless
  it is an owner-only regular file of this format and key whose HMAC-SHA256, made with the
  per-user secret key (`owner_only.secret_key`), verifies. An entry that is refused or fails to
  load is replaced. Entries are written atomically (a synced temporary file renamed over the
  entry), mode 0600. An executable that JAX's persistent tier answered is not what is stored:
  it is compiled again without that tier first (a loaded persistent entry does not serialise
  back into a working executable).

  Args:
    fn: the function to jit.
    args: its positional arguments (pytrees of arrays); the result is called with the same.
    cache_dir: the cache directory, created 0700 if needed.
    required: when the directory cannot be used (a file, read-only, not owner-only, full),
      raise (True: the user asked for the cache) or compile without it (False).
    salt: any text; change it to invalidate entries (see `executable_key`'s limits).

  Returns:
    `(compiled, info)`: the callable `jax.stages.Compiled` and a `CacheInfo`.

  Raises:
    UsageError: `required` and the directory is unusable (one line naming it and why).
  """
  start = time.perf_counter()
  try:
    key = executable_key(fn, args, salt)
  except fingerprint.Unfingerprintable as e:
    return _compile(fn, args), CacheInfo("uncached", None, None, reason=str(e))
  key_s = time.perf_counter() - start
  name = key + ENTRY_SUFFIX
  path = os.path.join(cache_dir, name)
  try:
    dir_fd = owner_only.open_directory(cache_dir, what="executable cache directory")
    secret = owner_only.secret_key()
  except (OSError, owner_only.Untrusted) as e:
    return _compile_uncached(fn, args, cache_dir, e, required, key, key_s)
  try:
    return _load_or_compile(fn, args, dir_fd, name, path, key, secret, key_s, cache_dir, required)
  finally:
    os.close(dir_fd)


def _load_or_compile(fn, args, dir_fd, name, path, key, secret, key_s, cache_dir, required):
  start, reason = time.perf_counter(), None
  try:
    payload = _read_entry(dir_fd, name, path, key, secret)
    if payload is not None:
      return _load(payload), CacheInfo("hit", key, path, key_s, time.perf_counter() - start)
  except _Refused as e:
    reason = f"refused {path}: {e}"
  load_s = time.perf_counter() - start
  start = time.perf_counter()
  compiled, storable = _compile_storable(fn, args)
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  try:
    _write_entry(dir_fd, name, key, secret, _serialize(storable))
  except OSError as e:
    if required:
      raise UsageError(_cache_error(cache_dir, e)) from None
    return compiled, CacheInfo("uncached", key, None, key_s, load_s, compile_s,
                               reason=_cache_error(cache_dir, e))
  return compiled, CacheInfo("refused" if reason else "miss", key, path, key_s, load_s, compile_s,
                             time.perf_counter() - start, reason)


def _compile(fn: Callable[..., Any], args: Sequence[Any]) -> jax.stages.Compiled:
  return jax.jit(fn).lower(*args).compile()


_FRESH_COMPILE = {"xla_embed_ir_in_executable": False}


def _compile_storable(fn, args) -> tuple[jax.stages.Compiled, jax.stages.Compiled]:
  """The compiled function, and one that serialises whole: itself, unless JAX's persistent tier
  answered the compile (then a real compile, that tier switched off)."""
  with compile_events() as events:
    compiled = _compile(fn, args)
  if not events.cache_hits:
    return compiled, compiled
  # A real compile: that tier switched off, and a (default-valued) compiler option that keeps
  # JAX's in-memory cache from handing back the executable it just loaded.
  with persistent_cache_disabled():
    return compiled, jax.jit(fn).lower(*args).compile(_FRESH_COMPILE)


def _compile_uncached(fn, args, cache_dir, error, required, key, key_s):
  if required:
    raise UsageError(_cache_error(cache_dir, error)) from None
  start = time.perf_counter()
  compiled = _compile(fn, args)
  return compiled, CacheInfo("uncached", key, None, key_s, 0.0, time.perf_counter() - start,
                             reason=_cache_error(cache_dir, error))


# ----------------------------------------------------------------------------------------------
# JAX's persistent tier, read and written with the same checks.

PERSISTENT_SUFFIX = "-cache"  # JAX's name for an entry: <key>-cache
PERSISTENT_MAGIC = b"FGPC1\n"
MAX_PERSISTENT_BYTES = 1 << 30
_installed = False


def _persistent_name(key: str) -> str:
  return f"{key}{PERSISTENT_SUFFIX}"


def _persistent_get(directory: str, key: str) -> bytes | None:
  """JAX's entry `key`, if it is an owner-only regular file whose MAC verifies; any other entry
  is removed (a miss: JAX then compiles and writes a good one). A directory that cannot be
  used (gone, or no longer owner-only) is a miss too: `check_cache_dir` refuses it up front."""
  try:
    dir_fd = owner_only.open_directory(directory, create=False, what="cache directory")
  except (OSError, owner_only.Untrusted):
    return None
  try:
    name = _persistent_name(key)
    try:
      opened = owner_only.open_entry(dir_fd, name, MAX_PERSISTENT_BYTES,
                                     os.path.join(directory, name))
    except owner_only.Untrusted:
      opened = None
      owner_only.remove(dir_fd, name)
    if opened is None:
      return None
    blob = owner_only.read_fd(*opened)
    head = len(PERSISTENT_MAGIC) + 32
    value = blob[head:]
    try:
      secret = owner_only.secret_key()
    except (OSError, owner_only.Untrusted):
      return None
    if (blob[:len(PERSISTENT_MAGIC)] != PERSISTENT_MAGIC or not hmac.compare_digest(
        blob[len(PERSISTENT_MAGIC):head],
        owner_only.mac(secret, b"persistent", key.encode(), value))):
      owner_only.remove(dir_fd, name)
      return None
    return value
  finally:
    os.close(dir_fd)


def _persistent_put(directory: str, key: str, value: bytes) -> None:
  """Writes JAX's entry atomically with a MAC. A failure (a full disk, a directory gone or no
  longer owner-only) leaves nothing and is not an error: the entry is just not cached."""
  try:
    dir_fd = owner_only.open_directory(directory, create=False, what="cache directory")
  except (OSError, owner_only.Untrusted):
    return
  try:
    mac = owner_only.mac(owner_only.secret_key(), b"persistent", key.encode(), value)
    owner_only.write_entry(dir_fd, _persistent_name(key), PERSISTENT_MAGIC + mac + value)
  except (OSError, owner_only.Untrusted):
    pass
  finally:
    os.close(dir_fd)


def _install_checked_persistent_tier() -> None:
  """Makes JAX's persistent cache read and write local entries through `_persistent_get` and
  `_persistent_put` (its own code reads a path, follows links and blocks on a FIFO)."""
  global _installed
  if _installed:
    return
  from jax._src import lru_cache  # noqa: PLC0415 - private: the only place JAX opens entries

  original_get, original_put = lru_cache.LRUCache.get, lru_cache.LRUCache.put

  def local(cache: Any) -> bool:
    return not cache.eviction_enabled and "://" not in str(cache.path)

  def get(self: Any, key: str) -> bytes | None:
    return _persistent_get(str(self.path), key) if local(self) else original_get(self, key)

  def put(self: Any, key: str, value: bytes) -> None:
    if local(self):
      _persistent_put(str(self.path), key, value)
    else:
      original_put(self, key, value)

  lru_cache.LRUCache.get, lru_cache.LRUCache.put = get, put
  _installed = True
