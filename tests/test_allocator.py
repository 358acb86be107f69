"""The allocator choice: auto's order, a missing allocator, pip's mimalloc, real re-execs."""

import json
import os
import subprocess
import sys
import types

import pytest

from funcgrad import allocator
from tests.helpers import ROOT, assert_one_line_error

_FILES = {"tcmalloc": "libtcmalloc_minimal.so.4", "jemalloc": "libjemalloc.so.2",
          "mimalloc": "libmimalloc.so.2"}


def _probe(name, env=None):
  script = ROOT / "tests" / "_allocator_probe.py"
  return subprocess.run([sys.executable, str(script), name], cwd=ROOT, capture_output=True,
                        text=True, timeout=60, env={**os.environ, **(env or {})}, check=False)


def _require(name):
  if allocator.find_library(name) is None:
    if os.environ.get("FUNCGRAD_REQUIRE_PEERS"):
      pytest.fail(f"{name} must be installed here (.ci/run installs it)")
    pytest.skip(f"{name} not installed")


def _fake_libraries(folder, names):
  folder.mkdir(exist_ok=True)
  for name in names:
    (folder / _FILES[name]).write_bytes(b"")
  return (str(folder),)


@pytest.mark.parametrize("present", [
    ("tcmalloc", "jemalloc", "mimalloc"), ("jemalloc", "mimalloc"), ("jemalloc",), ()])
def test_auto_takes_the_first_installed_in_the_measured_order(tmp_path, present):
  dirs = _fake_libraries(tmp_path / "lib", present)
  want = next((n for n in allocator.AUTO_ORDER if n in present), "system")
  name, path = allocator.resolve("auto", search_dirs=dirs, wheels={})
  assert name == want
  assert path == (None if want == "system" else str(tmp_path / "lib" / _FILES[want]))


def test_auto_order_covers_every_allocator():
  assert sorted(allocator.AUTO_ORDER) == sorted(set(allocator.ALLOCATORS) - {"auto", "system"})


def test_missing_allocators_say_how_to_install_them():
  with pytest.raises(ValueError, match="apt-get install libjemalloc2"):
    allocator.resolve("jemalloc", search_dirs=(), wheels={})
  with pytest.raises(ValueError, match=r"not installed: pip install -e '\.\[fast\]'"):
    allocator.resolve("mimalloc", search_dirs=(), wheels={})
  with pytest.raises(ValueError, match="Unknown allocator 'bogus'.*mimalloc"):
    allocator.resolve("bogus")
  assert allocator.resolve("auto", search_dirs=(), wheels={}) == ("system", None)
  assert allocator.resolve("system") == ("system", None)


def _fake_distribution(tmp_path, files):
  root = tmp_path / "site-packages"
  for f in files:
    (root / f).parent.mkdir(parents=True, exist_ok=True)
    (root / f).write_bytes(b"")
  return types.SimpleNamespace(files=list(files),
                               locate_file=lambda f: root / f)


def test_mimalloc_is_found_through_its_wheels_file_list(tmp_path, monkeypatch):
  relative = allocator.WHEELS["mimalloc"][1]
  dist = _fake_distribution(tmp_path, ["cmeel.prefix/lib/libmimalloc.so.3", relative])
  monkeypatch.setattr(allocator.importlib.metadata, "distribution",
                      lambda name: dist if name == "cmeel-mimalloc" else None)
  path = str(tmp_path / "site-packages" / relative)
  assert allocator.wheel_library("mimalloc") == path
  assert allocator.find_library("mimalloc", search_dirs=()) == path
  assert allocator.wheel_library("tcmalloc") is None  # not a pip allocator
  dist.files = ["cmeel.prefix/lib/libmimalloc.so.3"]  # a wheel laid out differently: not ours
  assert allocator.wheel_library("mimalloc") is None


def test_mimalloc_wheel_not_installed(monkeypatch):
  def missing(name):
    raise allocator.importlib.metadata.PackageNotFoundError(name)

  monkeypatch.setattr(allocator.importlib.metadata, "distribution", missing)
  assert allocator.wheel_library("mimalloc") is None


def test_the_installed_extra_puts_libmimalloc_in_this_environment():
  _require("mimalloc")
  path = allocator.wheel_library("mimalloc")
  assert path is not None and path.startswith(sys.prefix)
  assert os.path.basename(path) == "libmimalloc.so"


@pytest.mark.parametrize("name", ["tcmalloc", "jemalloc", "mimalloc"])
def test_reexec_under_allocator(name):
  _require(name)
  result = _probe(name)
  assert result.returncode == 0, result.stderr
  in_use, preload = json.loads(result.stdout)
  assert in_use == name and allocator.find_library(name) in preload


def test_auto_in_a_real_process_is_the_first_installed():
  want = next((n for n in allocator.AUTO_ORDER if allocator.find_library(n)), "system")
  result = _probe("auto")
  assert result.returncode == 0, result.stderr
  assert json.loads(result.stdout)[0] == want


@pytest.mark.parametrize("name", ["tcmalloc", "mimalloc"])
def test_reexec_back_to_system_strips_preload(name):
  _require(name)
  result = _probe("system", {"LD_PRELOAD": allocator.find_library(name)})
  assert result.returncode == 0, result.stderr
  assert json.loads(result.stdout) == ["system", ""]


def test_mimalloc_flag_without_the_extra_is_one_line():
  # The script as a user runs it, in an environment where pip installed no mimalloc.
  code = ("import runpy, sys; from funcgrad import allocator; allocator.WHEELS.clear(); "
          "sys.argv = ['optimize', '--allocator=mimalloc', '--steps=5']; "
          "runpy.run_module('experiments.optimize', run_name='__main__')")
  if allocator.find_library("mimalloc", wheels={}) is not None:
    pytest.skip("a system libmimalloc is installed")
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
  assert_one_line_error(result, "'mimalloc' is not installed", "pip install -e '.[fast]'")
