"""jax.export round trips (fixed and symbolic shapes) and every kind of bad file."""

import json

import numpy as np
import pytest

import funcgrad as fg
from funcgrad import exporting
from tests.cli import run_in_process
from tests.helpers import assert_one_line_error, run_module


def _export(tmp_path, shape="3x4", platforms=("cpu", "cuda"), name="g.fgx"):
  path = tmp_path / name
  exported = exporting.export_function(
      fg.muladd_sum_grads, exporting.input_specs(exporting.parse_shape(shape), np.float32, 3),
      platforms)
  exporting.write_artifact(str(path), exported, {"workload": "muladd_sum",
                                                 "example_shape": [3, 4]})
  return path


@pytest.mark.parametrize("text, shape", [("3x4", (3, 4)), ("N,D", ("N", "D")), ("12", (12,)),
                                         ("N", ("N",)), ("3,4", (3, 4))])
def test_parse_shape(text, shape):
  assert exporting.parse_shape(text) == shape


@pytest.mark.parametrize("text", ["", "3x", "0x4", "N,4x", "-1"])
def test_parse_shape_rejects(text):
  with pytest.raises(ValueError, match="Invalid shape"):
    exporting.parse_shape(text)


@pytest.mark.parametrize("shape, run_shapes",
                         [("3x4", [(3, 4)]), ("N,D", [(3, 4), (7, 2), (1, 1)])])
def test_round_trip_in_process(tmp_path, shape, run_shapes):
  exported, header = exporting.read_artifact(str(_export(tmp_path, shape)))
  assert header["workload"] == "muladd_sum" and set(header["platforms"]) == {"cpu", "cuda"}
  rng = np.random.default_rng(0)
  for run_shape in run_shapes:
    x, y, z = (rng.standard_normal(run_shape).astype(np.float32) for _ in range(3))
    value, (gx, gy, gz) = exported.call(x, y, z)
    np.testing.assert_allclose(value, np.sum(x.astype(np.float64) * y + z), rtol=1e-5)
    np.testing.assert_array_equal(gx, y)
    np.testing.assert_array_equal(gy, x)
    np.testing.assert_array_equal(gz, np.ones(run_shape))


@pytest.mark.slow
@pytest.mark.parametrize("shape, run_args", [("3x4", []), ("N,D", ["--shape=5x7"])])
def test_cli_round_trip_without_the_source(tmp_path, shape, run_args):
  """The real-CLI smoke run of both scripts (3x4); run_exported keeps a fresh process, as it
  checks that the workload code was never imported."""
  path = tmp_path / "g.fgx"
  export = run_module if shape == "3x4" else run_in_process
  written = export("experiments.export_graph", "--workload=muladd_sum", f"--shape={shape}",
                   f"--out={path}")
  assert written.returncode == 0, written.stderr
  assert "platforms cpu, cuda" in written.stdout
  ran = run_module("experiments.run_exported", f"--in={path}", "--seed=3", *run_args)
  assert ran.returncode == 0, ran.stderr
  assert "matches the NumPy reference" in ran.stdout
  assert "imported the workload code" not in ran.stdout


def test_run_exported_never_imports_workload_code(tmp_path):
  path = _export(tmp_path, "N,D")
  probe = ("import runpy, sys; sys.argv = ['run_exported', '--in=' + sys.argv[1]];\n"
           "try:\n  runpy.run_module('experiments.run_exported', run_name='__main__')\n"
           "except SystemExit as e:\n  code = e.code\n"
           "print('LEAKED' if {'funcgrad.grads', 'funcgrad.bench.workloads'} & set(sys.modules)"
           " else 'CLEAN', code)")
  import subprocess
  import sys

  from tests.helpers import ROOT
  result = subprocess.run([sys.executable, "-c", probe, str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
  assert result.stdout.strip().splitlines()[-1] == "CLEAN 0", result.stdout + result.stderr


def test_abs_loss_symbolic_export(tmp_path):
  path = tmp_path / "a.fgx"
  assert run_in_process("experiments.export_graph", "--workload=abs_loss", "--shape=N",
                        f"--out={path}").returncode == 0
  ran = run_module(  # a fresh process: run_exported refuses to have imported the workload code
      "experiments.run_exported", f"--in={path}", "--shape=1000")
  assert ran.returncode == 0 and "matches the NumPy reference" in ran.stdout, ran.stderr


def _corrupt(path, how):
  blob = path.read_bytes()
  if how == "truncated":
    path.write_bytes(blob[: len(blob) - 100])
  elif how == "truncated_header":
    path.write_bytes(blob[: len(exporting.MAGIC) + 2])
  elif how == "corrupted":
    flipped = bytearray(blob)
    flipped[-50] ^= 0xFF
    path.write_bytes(bytes(flipped))
  elif how == "empty":
    path.write_bytes(b"")
  elif how == "not_export":
    path.write_text("just some text, not a graph\n")
  elif how == "raw_garbage_payload":
    # A well-formed container around bytes that are not a jax.export flatbuffer.
    payload = b"\x00\x01garbage" * 20
    import hashlib
    header = json.dumps({"workload": "muladd_sum", "example_shape": [3, 4], "platforms": ["cpu"],
                         "payload_bytes": len(payload),
                         "sha256": hashlib.sha256(payload).hexdigest()}).encode()
    path.write_bytes(exporting.MAGIC + len(header).to_bytes(4, "little") + header + payload)


@pytest.mark.parametrize("how, fragment", [
    ("truncated", "truncated"), ("truncated_header", "truncated"), ("corrupted", "corrupted"),
    ("empty", "is empty"), ("not_export", "not a funcgrad export file"),
    ("raw_garbage_payload", "could not be deserialised")])
def test_bad_files(tmp_path, how, fragment):
  path = _export(tmp_path)
  _corrupt(path, how)
  with pytest.raises(ValueError, match=fragment):
    exporting.read_artifact(str(path))
  assert_one_line_error(run_in_process("experiments.run_exported", f"--in={path}"), fragment)


def test_missing_file(tmp_path):
  assert_one_line_error(
      run_in_process("experiments.run_exported", f"--in={tmp_path / 'nope.fgx'}"),
      "Cannot read", "nope.fgx")


def test_file_for_another_platform(tmp_path):
  path = _export(tmp_path, platforms=("cuda",))
  exported, _ = exporting.read_artifact(str(path))
  with pytest.raises(ValueError, match="exported for cuda but this process runs on cpu"):
    exporting.check_platform(exported)
  assert_one_line_error(run_in_process("experiments.run_exported", f"--in={path}"),
                        "exported for cuda", "--platforms")


@pytest.mark.parametrize("args, fragment", [
    (["--shape=5x5"], "has shape 5x5; the graph takes 3x4"),
    (["--shape=12"], "has shape 12; the graph takes 3x4"),
    (["--dtype=float16"], "dtype float16; the graph takes float32"),
    (["--dtype=int32"], "dtype int32"),
    (["--shape=3x"], "Invalid shape '3x'"),
])
def test_wrong_inputs(tmp_path, args, fragment):
  path = _export(tmp_path)
  assert_one_line_error(run_in_process("experiments.run_exported", f"--in={path}", *args),
                        fragment)


@pytest.mark.parametrize("args, fragment", [
    (["--shape=3x4x5"], "has 3 dimension(s)"), (["--shape=3x"], "Invalid shape"),
    (["--workload=abs_loss", "--shape=3x4"], "takes 1"),
    (["--platforms=cpu,metal"], "metal"), (["--dtype=float128"], "float128")])
def test_export_bad_flags(tmp_path, args, fragment):
  assert_one_line_error(
      run_in_process("experiments.export_graph", f"--out={tmp_path / 'x.fgx'}", *args),
      fragment)
  assert not (tmp_path / "x.fgx").exists()
