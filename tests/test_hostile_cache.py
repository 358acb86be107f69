"""Hostile battery, round two: caches that run no one else's code.

Both tiers of `--compilation_cache_dir=D` (JAX's persistent tier in D itself, the executable tier
in D/executables) take only owner-only files from owner-only directories, each authenticated with
an HMAC made with the user's own key, checked on the opened file before anything is loaded. What
a group member, another user or a careless umask could plant is refused with one line naming the
flag and the fix, before any work; what fails to load is refused and replaced; a full or read-only
directory is refused up front; a killed writer's temporary files are cleaned. Cases that need
another user or a mount run as root (they create a tmpfs or chown to `nobody`) and are skipped
otherwise.
"""

import hashlib
import os
import pickle
import stat
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcgrad import compile_cache, owner_only
from funcgrad.errors import UsageError
from tests.cli import run_in_process
from tests.test_hostile import assert_refused

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown to another user, or "
                               "mount a tmpfs); runs where the tests run as root")
NOBODY = 65534
COMPARE = ("--engines=jit", "--sizes=3x4", "--min_run_time=0.01", "--workloads=muladd_sum",
           "--noprogress")


@pytest.fixture(autouse=True)
def own_key(tmp_path_factory, monkeypatch):
  """A per-test-module user key (XDG_CONFIG_HOME), so that tests never touch ~/.config."""
  monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.getbasetemp() / "config"))


def _compare(cache, *args):
  return run_in_process("experiments.compare", *COMPARE, f"--compilation_cache_dir={cache}",
                        *args)


def _filled(tmp_path):
  cache = tmp_path / "cache"
  outcome = _compare(cache)
  assert outcome.returncode == 0, outcome.stderr
  (entry,) = (cache / "executables").iterdir()
  return cache, entry


# Class: directories and entries someone else could write, refused before any work.
def _world_writable(cache):
  cache.chmod(0o777)


def _group_writable(cache):
  cache.chmod(0o775)  # umask 002 and a shared group


def _group_writable_tier(cache):
  (cache / "executables").chmod(0o770)


def _group_writable_entry(cache):
  entry = next((cache / "executables").iterdir())
  entry.chmod(0o664)


def _group_writable_persistent_entry(cache):
  compile_cache._persistent_put(str(cache), "jit_f-0123", b"a compiled program")
  (cache / "jit_f-0123-cache").chmod(0o660)


def _fifo_named_like_a_persistent_entry(cache):
  os.mkfifo(cache / "jit_muladd_sum-0123abcd-cache")


def _fifo_named_like_an_executable_entry(cache):
  os.mkfifo(cache / "executables" / ("0" * 64 + ".jexec"))


def _directory_as_an_entry(cache):
  (cache / "executables" / ("1" * 64 + ".jexec")).mkdir()


def _symlink_entry(cache):
  (cache / ("2" * 8 + "-cache")).symlink_to("/etc/passwd")


def _socket_entry(cache):
  import socket  # noqa: PLC0415

  with socket.socket(socket.AF_UNIX) as s:
    s.bind(str(cache / "executables" / "s.jexec"))


PLANTED = [
    (_world_writable, ["writable by group and others", "chmod go-w"]),
    (_group_writable, ["writable by group", "chmod go-w"]),
    (_group_writable_tier, ["executables", "writable by group", "chmod go-w"]),
    (_group_writable_entry, [".jexec", "writable by group", "chmod go-w"]),
    (_group_writable_persistent_entry, ["-cache", "writable by group", "chmod go-w"]),
    (_fifo_named_like_a_persistent_entry, ["a FIFO", "remove it"]),
    (_fifo_named_like_an_executable_entry, ["a FIFO", "remove it"]),
    (_directory_as_an_entry, ["a directory", "remove it"]),
    (_symlink_entry, ["a symbolic link", "remove it"]),
    (_socket_entry, ["a socket", "remove it"]),
]


@pytest.mark.parametrize("plant, fragments", PLANTED, ids=[p[0].__name__[1:] for p in PLANTED])
def test_what_others_could_write_is_refused_before_any_work(tmp_path, plant, fragments):
  cache, _ = _filled(tmp_path)
  plant(cache)
  outcome = _compare(cache, f"--output_json={tmp_path}/r.json")
  assert_refused(outcome, "--compilation_cache_dir=", *fragments, limit_s=10.0)
  assert not (tmp_path / "r.json").exists()  # refused before any measurement
  assert "median per call" not in outcome.stdout


def test_a_symlinked_cache_directory_is_refused(tmp_path):
  (tmp_path / "real").mkdir(mode=0o700)
  (tmp_path / "link").symlink_to(tmp_path / "real")
  assert_refused(_compare(tmp_path / "link"), "--compilation_cache_dir=", "a symbolic link")


def test_a_file_as_the_cache_directory_is_refused(tmp_path):
  (tmp_path / "file").write_text("x")
  assert_refused(_compare(tmp_path / "file"), "--compilation_cache_dir=", "not a directory")


@ROOT_ONLY
def test_a_directory_of_another_user_is_refused(tmp_path):
  cache = tmp_path / "theirs"
  cache.mkdir(mode=0o755)
  os.chown(cache, NOBODY, NOBODY)
  assert_refused(_compare(cache), "--compilation_cache_dir=", "belongs to uid 65534")


@ROOT_ONLY
def test_an_entry_of_another_user_is_refused(tmp_path):
  cache, entry = _filled(tmp_path)
  os.chown(entry, NOBODY, NOBODY)
  assert_refused(_compare(cache), "--compilation_cache_dir=", "belongs to uid 65534")


# Class: entries with a valid checksum but no valid MAC are never unpickled, and replaced.
class _Evil:
  """Unpickling this creates a file: proof that code from the entry ran."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (open, (self.marker, "w"))


def _forged(key, payload, secret=None):
  header = compile_cache._entry_header(key, len(payload))[:-32]
  mac = (owner_only.mac(secret, header, payload) if secret is not None
         else hashlib.sha256(payload).digest())  # what round one checked: no key
  return header + mac + payload


def test_a_rewritten_entry_with_a_valid_sha256_never_runs(tmp_path):
  cache, entry = _filled(tmp_path)
  marker = tmp_path / "ran"
  entry.write_bytes(_forged(entry.stem, pickle.dumps(_Evil(str(marker)))))
  outcome = _compare(cache)
  assert outcome.returncode == 0, outcome.stderr
  assert not marker.exists()  # the hostile pickle was never loaded
  assert "median per call" in outcome.stdout
  _, info = _load_again(cache, entry)
  assert info.status == "hit"  # replaced by a good entry


def _load_again(cache, entry):
  del entry
  from funcgrad.bench import workloads  # noqa: PLC0415

  workload = workloads.get_workload("muladd_sum")
  args = [jax.device_put(a) for a in workload.make_inputs((3, 4), np.float32, 0)]
  return compile_cache.load_or_compile(workload.jax_value_and_grads(), args,
                                       str(cache / "executables"))


@pytest.mark.parametrize("payload", [b"not a pickle", pickle.dumps(("a", "tuple")),
                                     pickle.dumps((b"\0" * 64, None, None))],
                         ids=["bad_pickle", "wrong_object", "broken_executable"])
def test_an_authenticated_entry_that_fails_to_load_is_refused_and_replaced(tmp_path, payload):
  cache = tmp_path / "c"
  args = [jnp.ones(3)]
  _, first = compile_cache.load_or_compile(lambda x: x * 5, args, str(cache))
  path = first.path
  with open(path, "wb") as f:
    f.write(_forged(first.key, payload, owner_only.secret_key()))
  compiled, refused = compile_cache.load_or_compile(lambda x: x * 5, args, str(cache))
  assert refused.status == "refused" and "does not load" in refused.reason, refused
  np.testing.assert_array_equal(compiled(*args), [5.0] * 3)
  _, again = compile_cache.load_or_compile(lambda x: x * 5, args, str(cache))
  assert again.status == "hit"


@pytest.mark.slow  # three real processes
def test_a_damaged_entry_with_a_warm_persistent_tier_is_replaced_by_a_working_one(tmp_path):
  cache = tmp_path / "c"
  script = (
      "import sys, jax, jax.numpy as jnp, numpy as np\n"
      "from funcgrad import compile_cache\n"
      "compile_cache.enable_persistent_cache(sys.argv[1])\n"
      "c, info = compile_cache.load_or_compile(lambda x: jnp.cos(x) + 1, [jnp.ones(3)],"
      " sys.argv[1] + '/executables')\n"
      "np.testing.assert_allclose(c(jnp.ones(3)), np.cos(1.0) + 1, rtol=1e-6)\n"
      "print(info.status)\n")

  def run():
    done = subprocess.run([sys.executable, "-c", script, str(cache)], capture_output=True,
                          text=True, timeout=120, check=False, env={**os.environ})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()[-1]

  assert run() == "miss"
  (entry,) = (cache / "executables").iterdir()
  blob = bytearray(entry.read_bytes())
  blob[-5] ^= 0xFF
  entry.write_bytes(bytes(blob))
  assert run() == "refused"  # the persistent tier answered the compile; what is stored works
  assert run() == "hit"


# Class: JAX's persistent tier gets the same checks (it lives in D itself).
def test_a_replaced_persistent_entry_is_removed_not_loaded(tmp_path):
  cache = tmp_path / "p"
  compile_cache.check_cache_dir(str(cache), "--compilation_cache_dir")
  compile_cache._persistent_put(str(cache), "k1", b"compiled program")
  assert compile_cache._persistent_get(str(cache), "k1") == b"compiled program"
  (cache / "k1-cache").write_bytes(b"another user's compiled program")  # no valid MAC
  assert compile_cache._persistent_get(str(cache), "k1") is None  # a miss: JAX compiles
  assert not (cache / "k1-cache").exists()  # and writes a good entry in its place


def test_a_fifo_persistent_entry_is_a_miss_without_hanging(tmp_path):
  cache = tmp_path / "p"
  compile_cache.check_cache_dir(str(cache), "--compilation_cache_dir")
  os.mkfifo(cache / "k2-cache")
  assert compile_cache._persistent_get(str(cache), "k2") is None
  assert not (cache / "k2-cache").exists()


def test_persistent_entries_are_owner_only_and_atomic(tmp_path):
  cache = tmp_path / "p"
  compile_cache.check_cache_dir(str(cache), "--compilation_cache_dir")
  old = os.umask(0o002)
  try:
    compile_cache._persistent_put(str(cache), "k3", b"x" * 1000)
  finally:
    os.umask(old)
  assert stat.S_IMODE((cache / "k3-cache").stat().st_mode) == 0o600
  assert sorted(p.name for p in cache.iterdir()) == ["executables", "k3-cache"]


# Class: stale temporary files, empty entries.
def test_stale_temporary_files_are_cleaned(tmp_path):
  cache, _ = _filled(tmp_path)
  dead = subprocess.run(["true"], check=True)
  del dead
  gone_pid = _a_dead_pid()
  stale = [cache / "executables" / f"{'3' * 64}.jexec.{gone_pid}.abcd1234.tmp",
           cache / f"jit_f-{'4' * 8}-cache.{gone_pid}.abcd1234.tmp"]
  old = cache / "executables" / f"{'5' * 64}.jexec.{os.getpid()}.abcd1234.tmp"
  for path in [*stale, old]:
    path.write_bytes(b"half")
    path.chmod(0o600)
  os.utime(old, (1, 1))  # a live writer's, but a day old
  assert _compare(cache).returncode == 0
  assert not [p for p in [*stale, old] if p.exists()]


def _a_dead_pid():
  process = subprocess.Popen(["true"])
  process.wait()
  return process.pid


def test_empty_persistent_entries_are_removed(tmp_path):
  cache, _ = _filled(tmp_path)
  empty = cache / "jit_f-0000-cache"
  empty.write_bytes(b"")
  empty.chmod(0o600)
  assert _compare(cache).returncode == 0
  assert not empty.exists()


# Class: the per-user key.
def test_the_key_is_created_owner_only(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
  key = owner_only.secret_key()
  assert len(key) == owner_only.KEY_BYTES and owner_only.secret_key() == key
  assert stat.S_IMODE((tmp_path / "cfg" / "funcgrad" / "cache.key").stat().st_mode) == 0o600
  assert stat.S_IMODE((tmp_path / "cfg" / "funcgrad").stat().st_mode) == 0o700


@pytest.mark.parametrize("damage, fragments", [
    (lambda d: (d / "cache.key").chmod(0o644), ["readable or writable by others", "chmod 600"]),
    (lambda d: d.chmod(0o777), ["key directory", "chmod go-w"]),
    (lambda d: (d / "cache.key").write_bytes(b"short"), ["holds 5 bytes", "remove it"]),
], ids=["key_readable", "key_dir_writable", "key_short"])
def test_a_key_others_could_read_or_write_is_refused(tmp_path, monkeypatch, damage, fragments):
  monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
  owner_only.secret_key()
  damage(tmp_path / "cfg" / "funcgrad")
  assert_refused(_compare(tmp_path / "cache"), "--compilation_cache_dir=", *fragments)


# Class: read-only and full directories, refused before any work; ENOSPC leaves nothing.
@pytest.fixture
def mount(tmp_path):
  """A tiny tmpfs: mount(options) -> its path (unmounted afterwards)."""
  mounted = []

  def make(options):
    path = tmp_path / f"mnt{len(mounted)}"
    path.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    mounted.append(path)
    path.chmod(0o700)
    return path

  yield make
  for path in mounted:
    subprocess.run(["umount", "-l", str(path)], check=False)


@ROOT_ONLY
def test_a_read_only_cache_directory_is_refused_before_any_work(tmp_path, mount):
  folder = mount("size=64m,mode=0700")
  (folder / "cache").mkdir(mode=0o700)
  subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
  outcome = _compare(folder / "cache", f"--output_json={tmp_path}/r.json")
  assert_refused(outcome, "--compilation_cache_dir=", "Read-only file system", limit_s=10.0)
  assert not (tmp_path / "r.json").exists()
  assert "WARNING" not in outcome.stderr


@ROOT_ONLY
def test_a_full_cache_directory_is_refused_before_any_work(tmp_path, mount):
  folder = mount("size=1m,mode=0700")
  outcome = _compare(folder / "cache", f"--output_json={tmp_path}/r.json")
  assert_refused(outcome, "--compilation_cache_dir=", "MiB free", limit_s=10.0)
  assert not (tmp_path / "r.json").exists()


@ROOT_ONLY
def test_enospc_mid_write_leaves_no_empty_entry(mount):
  folder = mount("size=256k,mode=0700")
  fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
  try:
    with pytest.raises(OSError, match="No space left"):
      owner_only.write_entry(fd, "k-cache", b"x" * (1 << 20))
  finally:
    os.close(fd)
  assert list(folder.iterdir()) == []


def test_check_cache_dir_names_the_flag_it_is_given(tmp_path):
  (tmp_path / "f").write_text("")
  with pytest.raises(UsageError, match=r"^--cache_dir=.*not a directory"):
    compile_cache.check_cache_dir(str(tmp_path / "f"), "--cache_dir")


def test_funcgrad_compare_refuses_a_shared_cache_dir_before_any_work(tmp_path):
  import funcgrad  # noqa: PLC0415

  shared = tmp_path / "shared"
  shared.mkdir()
  shared.chmod(0o775)
  with pytest.raises(UsageError, match="^compilation_cache_dir=.*writable by group"):
    funcgrad.compare(lambda x: (x * x).sum(), np.ones(3, np.float32), min_run_time=0.01,
                     compilation_cache_dir=str(shared))
