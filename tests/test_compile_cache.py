"""Compile events, the persistent cache across processes, and the executable cache."""

import errno
import functools
import os
import stat

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcgrad as fg
from funcgrad import compile_cache, fingerprint
from tests.helpers import run_module


def _args(shape, seed, dtype=np.float32):
  rng = np.random.default_rng(seed)
  return [jax.device_put(rng.standard_normal(shape).astype(dtype)) for _ in range(3)]


def test_recompilation_counts():
  jax.clear_caches()  # other tests may have compiled this function for these shapes
  fn = jax.jit(fg.muladd_sum_grads)
  a, b, c = _args((3, 4), 0), _args((3, 4), 1), _args((5, 4), 2)
  counts = []
  for args in (a, b, c, c):
    with compile_cache.compile_events() as events:
      jax.block_until_ready(fn(*args))
    counts.append(events.compiles)
  assert counts == [1, 0, 1, 0]  # same shape: nothing; new shape: once


def test_first_call_breakdown_in_process():
  jax.clear_caches()
  result = compile_cache.first_call_breakdown(fg.muladd_sum_grads, *_args((2, 3), 0))
  assert result["compiles"] == 1 and result["cache_hits"] == 0
  assert result["first_call_s"] >= result["compile_s"] > 0
  assert result["trace_s"] > 0 and result["lower_s"] > 0


@pytest.mark.slow
def test_three_tiers_in_fresh_processes():
  result = run_module("experiments.compile_cache", "--workload=muladd_sum", "--shape=3x4")
  assert result.returncode == 0, result.stderr
  lines = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.strip()}
  assert lines["compiles"] == ["1", "0", "0"]  # cold compiles; both warm tiers load
  assert lines["cache_hits"] == ["0", "1", "1"]
  assert lines["cache_misses"] == ["1", "0", "0"]
  assert lines["trace_s"][-2:] == ["0", "ns"] and lines["lower_s"][-2:] == ["0", "ns"]
  assert "warm executable cache / cold first call:" in result.stdout
  for call, count in (("first", "1"), ("same", "0"), ("new", "1"), ("that", "0")):
    assert lines[call][-1] == count


# The executable cache.

def _key(fn=fg.muladd_sum_grads, shape=(3, 4), dtype=np.float32, seed=0):
  return compile_cache.executable_key(fn, _args(shape, seed, dtype))


def test_key_is_stable_and_ignores_values():
  assert _key() == _key() == _key(seed=1)
  assert _key(fn=jax.value_and_grad(fg.muladd_sum)) == _key(fn=jax.value_and_grad(fg.muladd_sum))


@pytest.mark.parametrize("change", ["shape", "dtype", "function", "argnums", "closure"])
def test_key_misses_on_a_changed_input_or_function(change):
  scale = 2.0
  changed = {
      "shape": lambda: _key(shape=(4, 3)),
      "dtype": lambda: _key(dtype=np.float16),
      "function": lambda: _key(fn=jax.value_and_grad(fg.muladd_sum)),
      "argnums": lambda: _key(fn=jax.value_and_grad(fg.muladd_sum, argnums=(0, 1))),
      "closure": lambda: _key(fn=lambda x, y, z: jnp.sum(x * y + z) * (scale + 1)),
  }[change]()
  base = (_key(fn=lambda x, y, z: jnp.sum(x * y + z) * scale) if change == "closure"
          else _key(fn=jax.value_and_grad(fg.muladd_sum, argnums=(0, 1, 2)))
          if change == "argnums" else _key())
  assert changed != base


def test_key_misses_on_another_jax_version(monkeypatch):
  before = _key()
  monkeypatch.setattr(jax, "__version__", "0.0.1")
  assert _key() != before


def test_key_misses_on_other_xla_flags(monkeypatch):
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  before = _key()
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=true")
  assert _key() != before


def test_key_misses_with_x64(x64):
  del x64
  with jax.enable_x64(False):
    before = _key()
  assert _key() != before


def test_a_function_without_a_stable_identity_is_not_cached(tmp_path):
  marker = object()  # its repr is a memory address, different in every process
  fn = functools.partial(lambda x, _m: x * 2, _m=marker)
  with pytest.raises(fingerprint.Unfingerprintable, match="memory address"):
    fingerprint.function_fingerprint(fn)
  compiled, info = compile_cache.load_or_compile(fn, [jnp.ones(3)], str(tmp_path))
  assert info.status == "uncached" and "memory address" in info.reason
  np.testing.assert_array_equal(compiled(jnp.ones(3)), [2.0, 2.0, 2.0])
  assert os.listdir(tmp_path) == []


def test_hit_gives_the_outputs_of_a_fresh_compile(tmp_path):
  args = _args((3, 4), 0)
  want = jax.jit(fg.muladd_sum_grads)(*args)
  first, info = compile_cache.load_or_compile(fg.muladd_sum_grads, args, str(tmp_path))
  assert info.status == "miss" and info.compile_s > 0 and os.path.isfile(info.path)
  loaded, again = compile_cache.load_or_compile(fg.muladd_sum_grads, args, str(tmp_path))
  assert again.status == "hit" and again.compile_s == 0 and again.load_s > 0
  other = _args((3, 4), 5)
  for fn in (first, loaded):
    jax.tree.map(np.testing.assert_array_equal, fn(*args), want)
  jax.tree.map(np.testing.assert_array_equal, loaded(*other),
               jax.jit(fg.muladd_sum_grads)(*other))


def _never_unpickle(payload):
  raise AssertionError(f"a refused entry was unpickled ({len(payload)} bytes)")


def _flip_a_byte(path):
  data = bytearray(path.read_bytes())
  data[-10] ^= 0xFF
  path.write_bytes(bytes(data))


def _truncate(path):
  path.write_bytes(path.read_bytes()[:-100])


def _foreign(path):
  path.write_bytes(b"#!/bin/sh\necho hello\n" * 10)


def _other_key(path):  # a whole, checksummed entry of another function, renamed
  other = path.parent / "other"
  _, info = compile_cache.load_or_compile(lambda x: x + 1, [jnp.ones(3)], str(other))
  os.replace(info.path, path)


def _symlink_to_dev_zero(path):
  path.unlink()
  path.symlink_to("/dev/zero")


def _fifo(path):
  path.unlink()
  os.mkfifo(path)


@pytest.mark.parametrize("damage", [_flip_a_byte, _truncate, _foreign, _other_key,
                                    _symlink_to_dev_zero, _fifo])
def test_a_damaged_entry_is_refused_and_replaced_never_unpickled(tmp_path, monkeypatch, damage):
  args = _args((3, 4), 0)
  _, info = compile_cache.load_or_compile(fg.muladd_sum_grads, args, str(tmp_path))
  damage(tmp_path / os.path.basename(info.path))
  with monkeypatch.context() as m:
    m.setattr(compile_cache, "_deserialize", _never_unpickle)
    compiled, refused = compile_cache.load_or_compile(fg.muladd_sum_grads, args, str(tmp_path))
  assert refused.status == "refused" and refused.path == info.path, refused
  jax.tree.map(np.testing.assert_array_equal, compiled(*args),
               jax.jit(fg.muladd_sum_grads)(*args))
  assert stat.S_ISREG(os.lstat(info.path).st_mode)  # replaced by a real entry
  _, again = compile_cache.load_or_compile(fg.muladd_sum_grads, args, str(tmp_path))
  assert again.status == "hit"
  assert sorted(os.listdir(tmp_path)) in ([os.path.basename(info.path)],
                                          [os.path.basename(info.path), "other"])


@pytest.mark.parametrize("umask, mode", [(0o022, 0o600), (0o077, 0o600), (0o002, 0o600)])
def test_entries_are_owner_only_whatever_the_umask(tmp_path, umask, mode):
  before = os.umask(umask)
  try:
    _, info = compile_cache.load_or_compile(lambda x: x * 3, [jnp.ones(2)], str(tmp_path / "c"))
  finally:
    os.umask(before)
  assert stat.S_IMODE(os.stat(info.path).st_mode) == mode


def _one_line_value_error(fn, *fragments):
  with pytest.raises(ValueError) as raised:
    fn()
  message = str(raised.value)
  assert "\n" not in message
  for fragment in fragments:
    assert fragment in message, message


def test_unusable_directories(tmp_path, monkeypatch):
  def load(directory, required=True):
    return compile_cache.load_or_compile(lambda x: x - 1, [jnp.ones(2)], str(directory),
                                         required=required)

  a_file = tmp_path / "a_file"
  a_file.write_text("")
  _one_line_value_error(lambda: load(a_file), "a_file", "not a directory")
  _one_line_value_error(lambda: load(a_file / "sub"), "Not a directory")
  _, info = load(a_file, required=False)
  assert info.status == "uncached" and "a_file" in info.reason

  shared = tmp_path / "shared"
  shared.mkdir()
  shared.chmod(0o777)
  _one_line_value_error(lambda: load(shared), "writable by group and others", "chmod go-w")

  full = tmp_path / "full"

  def no_space(*args):
    del args
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(compile_cache, "_write_entry", no_space)
  _one_line_value_error(lambda: load(full), "full", "No space left")
  compiled, info = load(full, required=False)
  assert info.status == "uncached" and "No space left" in info.reason
  np.testing.assert_array_equal(compiled(jnp.ones(2)), [0.0, 0.0])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory(tmp_path):
  tmp_path.chmod(0o555)
  try:
    _one_line_value_error(lambda: compile_cache.load_or_compile(
        lambda x: x, [jnp.ones(2)], str(tmp_path)), "Permission denied")
  finally:
    tmp_path.chmod(0o755)


# Modules that still import the runner, until the runner's refactor moves what they use.
_NOT_YET_ONE_WAY = {"fit.py", "problems.py", "distributed.py"}
