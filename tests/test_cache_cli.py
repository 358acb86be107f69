"""experiments.compile_cache refuses what it cannot use before measuring anything."""

import pytest

from tests.cli import run_in_process
from tests.helpers import assert_one_line_error


@pytest.mark.parametrize("args, fragments", [
    (["--cache_dir=/etc/passwd"], ["--cache_dir=/etc/passwd", "not a directory"]),
    (["--shape=3x4,5x6"], ["'3x4,5x6'", "--shape"]),
    (["--shape=0x4"], ["'0x4'", "--shape"]),
])
def test_unusable_cache_or_shape_is_one_line_before_any_measurement(args, fragments):
  outcome = run_in_process("experiments.compile_cache", *args)
  assert outcome.returncode == 2
  assert_one_line_error(outcome, *fragments)
  assert outcome.seconds < 5  # refused before starting any measuring process


@pytest.mark.slow  # quick subset (-m "not slow") within 90 s: a sweep or a real process
@pytest.mark.parametrize("module", ["experiments.compare", "experiments.optimize"])
def test_jax_platforms_naming_an_absent_platform_is_one_line(module):
  from tests.helpers import run_module

  result = run_module(module, "--min_run_time=0.01", env={"JAX_PLATFORMS": "bogus"}, timeout=60)
  assert result.returncode == 2
  assert_one_line_error(result, "JAX_PLATFORMS")


@pytest.mark.parametrize("args, fragments", [
    (["--max_elements=11"], ["--max_elements=11", "at least 12"]),
    (["--max_elements=100000000000000"], ["GiB", "refused before allocating"]),
    (["--engines=numpy,jit", "--baseline=eager"], ["--baseline='eager'", "not in --engines"]),
    (["--engines=jit"], ["--engines='jit'", "two"]),
    (["--output_json=/tmp", "--max_elements=12"], ["--output_json"]),
])
def test_crossover_bad_input(args, fragments):
  outcome = run_in_process("experiments.crossover", *args)
  assert outcome.returncode == 2
  assert_one_line_error(outcome, *fragments)


@pytest.mark.slow
def test_crossover_through_the_cli(tmp_path):
  """In-process (the same parse and run); the GPU check's smoke test runs it in a process."""
  import json

  path = tmp_path / "x.json"
  result = run_in_process("experiments.crossover", "--max_elements=800", "--min_run_time=0.01",
                          f"--output_json={path}", f"--plot={tmp_path / 'x.png'}")
  assert result.returncode == 0, result.stderr[-2000:]
  document = json.loads(path.read_text())
  assert [r["shape"] for r in document["results"][::2]] == [[3, 4], [6, 8], [12, 16], [24, 32]]
  (point,) = document["crossovers"]
  assert point["engine"] == "numpy" and point["baseline"] == "jit"
  assert point["crossover_elements"] in (None, 12, 48, 192, 768)
  assert "jit is faster than numpy" in result.stdout
  assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"
