"""`experiments.compare --function` with --inputs (any pytree, integer labels) and
--peer_function (your torch version); its bad input as one line naming the flag."""

import json

import pytest

from tests.cli import run_in_process
from tests.helpers import assert_one_line_error

FIXTURES = "tests.fixtures.user_functions"
QUICK = ["--min_run_time=0.01"]


def test_inputs_and_a_torch_version_through_the_cli(tmp_path):
  path = tmp_path / "f.json"
  result = run_in_process("experiments.compare", f"--function={FIXTURES}:labelled_loss",
                          f"--inputs={FIXTURES}:labelled_inputs", "--engines=jit,torch_eager",
                          f"--peer_function=torch:{FIXTURES}:torch_labelled_loss", *QUICK,
                          f"--output_json={path}")
  assert result.returncode == 0, result.stderr[-2000:]
  document = json.loads(path.read_text())
  rows = {r["engine"]: r for r in document["results"]}
  assert set(rows) == {"jit", "torch_eager"}
  for row in rows.values():  # int32 labels arrived as integers: float ones would fail to index
    assert row["ok"], row["error"]
    assert row["reference"].startswith("jax float64 re-run")
    assert (row["rtol"], row["atol"]) == (1e-4, 1e-6)
  (speedup,) = document["speedups"]
  for key in ("break_even_calls", "break_even_calls_warm"):  # None: jit is not faster per call
    assert speedup[key] is None or speedup[key] >= 1
  assert "checked: jit, torch_eager against jax float64 re-run" in result.stdout


@pytest.mark.parametrize("args, fragments", [
    ([f"--inputs={FIXTURES}:raising_inputs"], ["--inputs=", "raised ValueError: no data here"]),
    ([f"--inputs={FIXTURES}:list_inputs"], ["--inputs=", "returned a list, not a tuple"]),
    ([f"--inputs={FIXTURES}:nothing"], ["--inputs=", "has no attribute"]),
    ([f"--inputs={FIXTURES}:labelled_inputs", "--shapes=3"], ["--inputs and --shapes"]),
    ([f"--inputs={FIXTURES}:labelled_inputs", "--peer_function=jax:m:f"],
     ["--peer_function='jax:m:f'", "FRAMEWORK:MODULE:NAME"]),
    ([f"--inputs={FIXTURES}:labelled_inputs", f"--peer_function=torch:{FIXTURES}:NOT_CALLABLE"],
     ["--peer_function=", "not callable"]),
    ([f"--inputs={FIXTURES}:labelled_inputs", "--argnums=5"], ["argnums=5", "out of range"]),
])
def test_bad_function_input_is_one_line_naming_the_flag(args, fragments, tmp_path):
  jsonl = tmp_path / "r.jsonl"
  result = run_in_process("experiments.compare", f"--function={FIXTURES}:labelled_loss", *args,
                          *QUICK, f"--output_jsonl={jsonl}")
  assert_one_line_error(result, *fragments)
  assert not jsonl.exists()  # refused before measuring anything


def test_inputs_goes_with_function():
  assert_one_line_error(run_in_process("experiments.compare", f"--inputs={FIXTURES}:list_inputs"),
                        "--inputs goes with --function")
