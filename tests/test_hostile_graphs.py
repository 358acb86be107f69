"""Hostile battery, round two: exported graphs that pass every header check but are wrong.

Each is a real `jax.export` graph in a valid container (magic, header, SHA-256), so the only
thing wrong is what the graph does: fewer outputs than its workload, integer inputs, a shape
constraint the inputs violate, outputs far bigger than its inputs, or a header field holding a
5000-digit integer or terminal escapes. Each ends in one `error:` line (or, for escapes, output
with the escapes written out), no traceback, nothing allocated that would not fit.
"""

import hashlib
import json

import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from funcgrad import exporting
from tests.cli import run_in_process
from tests.test_hostile import assert_refused

META = {"workload": "muladd_sum", "example_shape": [3, 4], "shape": ["3", "4"],
        "dtype": "float32"}


def _write(path, fn, specs, **meta):
  exported = exporting.export_function(fn, specs, ("cpu",))
  exporting.write_artifact(str(path), exported, {**META, **meta})
  return path


def _specs(shape=(3, 4), dtype=np.float32, count=3):
  return exporting.input_specs(shape, dtype, count)


def _fewer_outputs(path):
  return _write(path, lambda x, y, z: (jnp.sum(x * y + z), y), _specs())


def _int32_inputs(path):
  return _write(path, lambda x, y, z: (jnp.sum(x * y + z), y, x, z), _specs(dtype=np.int32),
                dtype="int32")


def _violated_constraint(path):
  dims = export.symbolic_shape("N, D", constraints=("N >= 8",))
  import jax  # noqa: PLC0415

  specs = [jax.ShapeDtypeStruct(dims, np.float32)] * 3
  return _write(path, lambda x, y, z: (jnp.sum(x * y + z), y, x, jnp.ones_like(z)), specs,
                shape=["N", "D"])


def _huge_outputs(path):
  # 3x4 inputs, a 100000x100000 float32 output: 40 GB asked of a 6 KB file.
  return _write(path, lambda x, y, z: (jnp.sum(x * y + z), y, x,
                                       jnp.broadcast_to(jnp.sum(z), (100_000, 100_000))),
                _specs())


GRAPHS = [
    ("fewer_outputs", _fewer_outputs, [], ["2 outputs", "muladd_sum", "has 4"]),
    ("int32_inputs", _int32_inputs, [], ["input 0 is int32", "float inputs"]),
    ("violated_constraint", _violated_constraint, ["--shape=3x4"],
     ["refuses inputs of shape 3x4", "--shape"]),
    ("huge_outputs", _huge_outputs, [], ["100000x100000", "refused before allocating"]),
]


@pytest.mark.parametrize("name, make, args, fragments", GRAPHS, ids=[g[0] for g in GRAPHS])
def test_a_wrong_graph_in_a_valid_container_is_one_line(tmp_path, name, make, args, fragments):
  path = make(tmp_path / f"{name}.fgx")
  assert_refused(run_in_process("experiments.run_exported", f"--in={path}", *args), *fragments)


def test_a_violated_constraint_that_holds_runs(tmp_path):
  path = _violated_constraint(tmp_path / "c.fgx")
  ran = run_in_process("experiments.run_exported", f"--in={path}", "--shape=8x4")
  assert "matches the NumPy reference" in ran.stdout, (ran.stdout, ran.stderr)


def _rewrite_header(path, **changes):
  blob = path.read_bytes()
  start = len(exporting.MAGIC) + 4
  length = int.from_bytes(blob[len(exporting.MAGIC):start], "little")
  header = json.loads(blob[start:start + length])
  payload = blob[start + length:]
  raw = json.dumps({**header, **changes}).encode()
  for field, text in changes.items():
    if isinstance(text, bytes):  # raw JSON text for the field (e.g. a 5000-digit number)
      raw = raw.replace(json.dumps(text.decode()).encode(), text)
      del field
  path.write_bytes(exporting.MAGIC + len(raw).to_bytes(4, "little") + raw + payload)
  return path


@pytest.fixture
def good_graph(tmp_path):
  return _write(tmp_path / "good.fgx", lambda x, y, z: (jnp.sum(x * y + z), y, x,
                                                       jnp.ones_like(z)), _specs())


@pytest.mark.parametrize("field", ["example_shape", "payload_bytes"])
def test_a_5000_digit_integer_in_the_header_is_one_line(good_graph, field):
  digits = "9" * 5000
  blob = good_graph.read_bytes()
  start = len(exporting.MAGIC) + 4
  length = int.from_bytes(blob[len(exporting.MAGIC):start], "little")
  header = json.loads(blob[start:start + length])
  header[field] = "@@"
  raw = json.dumps(header).encode().replace(
      b'"@@"', f"[{digits}, 4]".encode() if field == "example_shape" else digits.encode())
  good_graph.write_bytes(exporting.MAGIC + len(raw).to_bytes(4, "little") + raw
                         + blob[start + length:])
  assert_refused(run_in_process("experiments.run_exported", f"--in={good_graph}"),
                 "bad header", "digits")


def test_terminal_escapes_in_a_header_are_printed_escaped(good_graph):
  evil = "muladd\x1b]0;owned\x07\x1b[2J\x9b31m"
  _rewrite_header(good_graph, workload=evil)
  ran = run_in_process("experiments.run_exported", f"--in={good_graph}")
  text = ran.stdout + ran.stderr
  assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text, text
  assert "muladd\\x1b]0;owned\\x07\\x1b[2J\\x9b31m" in ran.stdout, ran.stdout
  assert "Traceback" not in ran.stderr


def test_the_sha256_still_guards_the_payload(good_graph):
  blob = bytearray(good_graph.read_bytes())
  blob[-10] ^= 0xFF
  good_graph.write_bytes(bytes(blob))
  assert hashlib.sha256(bytes(blob)).hexdigest()  # a changed payload, the old digest recorded
  assert_refused(run_in_process("experiments.run_exported", f"--in={good_graph}"),
                 "SHA-256 does not match")


@pytest.mark.parametrize("dtype", ["int32", "int8", "bool", "uint8"])
def test_export_graph_refuses_a_non_float_dtype(tmp_path, dtype):
  outcome = run_in_process("experiments.export_graph", f"--out={tmp_path}/g.fgx",
                           f"--dtype={dtype}")
  assert_refused(outcome, f"--dtype='{dtype}'", "not a float dtype", "float32")
  assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("dtype", ["int32", "complex64"])
def test_run_exported_refuses_a_non_float_dtype(good_graph, dtype):
  assert_refused(run_in_process("experiments.run_exported", f"--in={good_graph}",
                                f"--dtype={dtype}"), f"has dtype {dtype}", "takes float32")
