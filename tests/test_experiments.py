"""The tutorial experiments through their CLI (`python -m experiments.<name>`): one real-process
smoke run per script, the other runs through the same parse and main in-process (`tests.cli`)."""

import json

import pytest

from funcgrad import gpu_available
from tests.cli import run_in_process
from tests.helpers import assert_one_line_error, run_module


def test_env_check_text_and_json():
  text = run_module("experiments.env_check")
  assert text.returncode == 0, text.stderr
  assert "default backend" in text.stdout
  data = json.loads(run_in_process("experiments.env_check", "--format=json").stdout)
  assert "cpu" in data["platforms"] and data["packages"]["jax"]


@pytest.mark.usefixtures("x64")  # --x64 turns jax_enable_x64 on in this process: restored after
def test_dtype_table_formats():
  text = run_module("experiments.dtype_table")
  assert text.returncode == 0, text.stderr
  assert "torch.float32 or torch.float" in text.stdout and "jnp.bfloat16" in text.stdout
  markdown = run_in_process("experiments.dtype_table", "--format=markdown", "--x64").stdout
  assert markdown.startswith("| Data type |")
  assert "| 64-bit floating point | torch.float64 or torch.double |" in markdown
  rows = json.loads(run_in_process("experiments.dtype_table", "--format=json").stdout)
  assert len(rows) == 10 and rows[-1]["jax_dtype"] == "bfloat16"


def test_tensors():
  result = run_module("experiments.tensors")
  assert result.returncode == 0, result.stderr
  assert "same key again -> identical numbers: True" in result.stdout
  assert "needs a float dtype" in result.stdout


def test_gradients_agree_and_fix_the_swap():
  result = run_module("experiments.gradients")
  assert result.returncode == 0, result.stderr
  assert "x.grad [ 8. 12.]" in result.stdout
  assert "FAIL" not in result.stdout
  assert "all gradients agree with their closed forms" in result.stdout
  # With seed 0, grad_y (= x) is what the tutorial printed as grad_x: 1.7640524 first.
  assert "[[ 1.7640524" in result.stdout


@pytest.mark.skipif(gpu_available(), reason="checks the no-GPU path")
def test_device_placement_without_gpu():
  skipped = run_in_process("experiments.device_placement")
  assert skipped.returncode == 0, skipped.stderr
  assert "skipped the 'cuda' leg" in skipped.stdout
  assert_one_line_error(run_in_process("experiments.device_placement", "--require_gpu"),
                        "No gpu device", "platforms present are cpu")


def test_device_placement_cpu_round_trip():
  result = run_module("experiments.device_placement", "--device=cpu")
  assert result.returncode == 0, result.stderr
  assert "back on the host as ndarray" in result.stdout


@pytest.mark.gpu
def test_device_placement_gpu_round_trip():
  result = run_module("experiments.device_placement", "--require_gpu")
  assert result.returncode == 0, result.stderr
  assert "moved to cuda:0" in result.stdout


@pytest.mark.parametrize("module, args, fragments", [
    ("experiments.env_check", ["--format=xml"], ["--format=xml", "text|json"]),
    ("experiments.dtype_table", ["--format=xml"], ["--format=xml", "text|markdown|json"]),
    ("experiments.tensors", ["--dtype=float128"], ["'float128'", "Valid names", "float32"]),
    ("experiments.tensors", ["--dtype=float64"], ["float64", "jax_enable_x64"]),
    ("experiments.tensors", ["--dtype=int32"], ["int32", "not a float dtype"]),
    ("experiments.tensors", ["--device=cuda:x"], ["'cuda:x'", "cpu, cpu:N, cuda"]),
    ("experiments.device_placement", ["--device=cpu:7"], ["'cpu:7'", "1 cpu device"]),
    ("experiments.device_placement", ["--device=tpu0"], ["'tpu0'", "Valid"]),
    ("experiments.gradients", ["--n=0"], ["--n=0"]),
    ("experiments.gradients", ["--bogus=1"], ["bogus"]),
    ("experiments.gradients", ["stray"], ["stray"]),
])
def test_bad_input_is_one_clear_line(module, args, fragments):
  assert_one_line_error(run_in_process(module, *args), *fragments)
