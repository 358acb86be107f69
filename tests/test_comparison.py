"""`funcgrad.compare` on a function that is not the tutorial's, and its bad inputs."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcgrad
from funcgrad import compile_cache
from funcgrad.bench import case, comparison, engines
from funcgrad.bench.workloads import user
from funcgrad.errors import UsageError
from tests.fixtures.user_functions import mlp_loss, raises_when_traced, vector_output

W = np.linspace(-1, 1, 64 * 8, dtype=np.float32).reshape(64, 8)
X = np.linspace(0, 1, 32 * 64, dtype=np.float32).reshape(32, 64)


def test_compare_checks_then_times_eager_and_jit(tmp_path):
  comparison = funcgrad.compare(mlp_loss, W, X, argnums=(0, 1), min_run_time=0.02)
  assert funcgrad.bench.compare is funcgrad.compare
  eager, jit = comparison.results
  for row in (eager, jit):
    assert row.ok and row.reference.startswith("jax float64 re-run")
    assert row.workload == "mlp_loss(w 64x8, x 32x64)"  # the caption: function and arguments
    assert row.max_rel_err <= row.tolerance and row.median_s > 0
  # The stages are inside the first call; JAX times them with the wall clock (in a busy pytest
  # worker their sum was seen 3% and 15% above the first call, see tests/test_runner.py).
  assert jit.first_call_s >= 0.75 * (jit.trace_s + jit.lower_s + jit.compile_s)
  ratio, low, high = comparison.speedup("eager")
  assert low <= ratio <= high and ratio > 1  # jit beats op-by-op eager on a 3-op function
  text = comparison.table()
  assert "speedup of jit over each engine" in text and "eager" in text
  path = tmp_path / "c.json"
  comparison.to_json(str(path))
  document = json.loads(path.read_text())
  assert {s["engine"] for s in document["speedups"]} == {"eager"}
  assert set(document["speedups"][0]) == {"backend", "workload", "shape", "engine", "baseline",
                                          "ratio", "ci_low", "ci_high", "rounds",
                                          "break_even_calls", "break_even_calls_warm",
                                          "half_width", "resolved", "estimator"}
  assert len(document["results"][1]["block_times_s"]) == document["results"][1]["blocks"]


def test_compare_value_only_and_packed():
  comparison = funcgrad.compare(vector_output, np.arange(4.0, dtype=np.float32),
                                value_and_grad=False, engines=("jit", "jit_packed"),
                                min_run_time=0.01, baseline="jit")
  assert all(r.ok for r in comparison.results)
  with pytest.raises(UsageError, match="No speedup of jit over 'eager'"):
    comparison.speedup("eager")


@pytest.mark.parametrize("fn, args, kwargs, message", [
    (3, (W,), {}, "is not callable"),
    (vector_output, (np.ones(3, np.float32),), {}, "not a scalar"),
    (mlp_loss, (W, np.ones((2, 64), np.int32)), {"argnums": 1}, "dtype int32"),
    (raises_when_traced, (np.ones(3, np.float32),), {}, "fails to trace"),
    (mlp_loss, (W, X), {"argnums": 5}, "out of range"),
    (mlp_loss, (W, X), {"engines": ("torch_eager",)}, "cannot run an arbitrary function"),
    (mlp_loss, (W, X), {"engines": "jit,bogus"}, "engines='bogus'"),
    (mlp_loss, (W, X), {"engines": ("jit",), "baseline": "eager"}, "baseline='eager'"),
    (mlp_loss, (W, X), {"min_run_time": float("nan")}, "min_run_time=nan"),
])
def test_compare_refuses_with_one_line(fn, args, kwargs, message):
  with pytest.raises(UsageError, match=message) as info:
    funcgrad.compare(fn, *args, **{"min_run_time": 0.01, **kwargs})
  assert "\n" not in str(info.value)
  assert "--" not in str(info.value)  # the Python API names parameters, not flags


def test_engines_as_a_comma_separated_string_as_on_the_command_line():
  assert [e.name for e in comparison._engines("eager, jit", {})] == ["eager", "jit"]
  assert [e.name for e in comparison._engines("jit_packed", {})] == ["jit_packed"]
  assert [e.name for e in comparison._engines(("jit", "eager"), {})] == ["jit", "eager"]


def test_compare_goes_through_the_runners_memory_check(monkeypatch):
  from funcgrad.bench import checks  # noqa: PLC0415

  monkeypatch.setattr(checks, "available_memory_bytes", lambda backend: 1024)
  with pytest.raises(UsageError, match="refused before allocating"):
    funcgrad.compare(mlp_loss, W, X, min_run_time=0.01)


def test_a_function_that_fails_in_one_engine_makes_that_row_failed():
  calls = {"n": 0}

  def fails_when_jitted(x):
    # Called first by the trace check; the second call is the jit engine's trace (prepared
    # before eager), which fails; eager's calls and the float64 reference (whose compiled
    # program the gradient check reuses) come after.
    calls["n"] += 1
    if calls["n"] == 2:
      raise RuntimeError("broken under jit")
    return jnp.sum(x * x)

  comparison = funcgrad.compare(fails_when_jitted, np.ones(3, np.float32), min_run_time=0.01,
                                engines=("eager", "jit"), baseline="eager")
  eager, jit = comparison.results
  assert eager.ok and eager.median_s > 0
  assert jit.status == "failed" and "RuntimeError: broken under jit" in jit.error
  assert comparison.speedups == []


def test_a_random_functions_eager_reference_reuses_the_eager_engines_compiles():
  """The runner computes the reference after the first calls: a random function's reference
  (an eager run with the same key) then compiles no primitive the eager engine compiled. (With
  gradients, their float64 finite-difference check compiles its own program besides.)"""
  def noisy_loss(w, key):
    return jnp.sum(jnp.tanh(w * jax.random.normal(key, w.shape)) ** 2)

  uf = user.user_function(noisy_loss, (W, jax.random.key(0)), value_and_grad=False)
  workload = user.user_workload(uf)
  inputs = workload.make_inputs((), None, 0)
  eager = engines.ENGINES["eager"].prepare(workload, inputs, case.placement("cpu"))
  with compile_cache.compile_events() as events:
    reference = workload.expected(inputs)
  assert uf.check == "eager" and reference.label.startswith("jax eager")
  assert events.compiles == 0
  assert reference.judge(eager.first_output, "jax").passed


def test_compilation_cache_dir_uses_the_executable_tier(tmp_path):
  kwargs = dict(engines=("jit",), min_run_time=0.01, compilation_cache_dir=str(tmp_path))
  (cold,) = funcgrad.compare(mlp_loss, W, X, **kwargs).results
  (warm,) = funcgrad.compare(mlp_loss, W, X, **kwargs).results
  assert cold.ok and cold.executable_cache == "miss" and cold.compiles == 1
  # The second comparison loads the stored executable: nothing traced, lowered or compiled.
  assert warm.ok and warm.executable_cache == "hit" and warm.compiles == 0
  assert warm.trace_s == 0 and warm.lower_s == 0
  assert warm.first_call_s < cold.first_call_s
  assert list((tmp_path / "executables").iterdir())
