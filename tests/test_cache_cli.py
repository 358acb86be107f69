"""experiments.compile_cache refuses what it cannot use before measuring anything."""

import pytest

from tests.cli import run_in_process
from tests.helpers import assert_one_line_error


@pytest.mark.parametrize("args, fragments", [
    (["--cache_dir=/etc/passwd"], ["--cache_dir=/etc/passwd", "Not a directory"]),
    (["--shape=3x4,5x6"], ["'3x4,5x6'", "--shape"]),
    (["--shape=0x4"], ["'0x4'", "--shape"]),
])
def test_unusable_cache_or_shape_is_one_line_before_any_measurement(args, fragments):
  outcome = run_in_process("experiments.compile_cache", *args)
  assert outcome.returncode == 2
  assert_one_line_error(outcome, *fragments)
  assert outcome.seconds < 5  # refused before starting any measuring process


@pytest.mark.parametrize("module", ["experiments.compare", "experiments.optimize"])
def test_jax_platforms_naming_an_absent_platform_is_one_line(module):
  from tests.helpers import run_module

  result = run_module(module, "--min_run_time=0.01", env={"JAX_PLATFORMS": "bogus"}, timeout=60)
  assert result.returncode == 2
  assert_one_line_error(result, "JAX_PLATFORMS")
