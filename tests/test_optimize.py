"""Training loops: every style reaches the same parameters, the optimum, and donation is safe."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcgrad import compile_cache, optimize, problems
from funcgrad.bench import fits as fit
from funcgrad.errors import UsageError
from funcgrad.peers import peer_available
from tests.cli import run_in_process
from tests.helpers import assert_one_line_error, run_module

JAX_LOOPS = ["eager", "jit_step", "scan", "scan_fused"]


def _run(loop, problem, name="adam", lr=0.01, steps=300):
  return optimize.to_numpy(optimize.make_loop(loop, problem, name, lr, steps)())


@pytest.fixture(scope="module")
def linreg():
  return problems.linear_regression_problem(n=200, d=5, seed=1)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_every_loop_matches_the_float64_reference_on_a_smooth_problem(linreg, name):
  want = optimize.numpy_loop(linreg, name, 0.05, 300, np.float64)()
  loops = JAX_LOOPS + ["numpy"] + (["torch"] if peer_available("torch") else [])
  for loop in loops:
    got = _run(loop, linreg, name, 0.05)
    assert got.losses.shape == (300,)
    np.testing.assert_allclose(got.params, want.params, atol=1e-4, err_msg=loop)
    np.testing.assert_allclose(got.losses, want.losses, rtol=1e-4, atol=1e-5, err_msg=loop)


@pytest.mark.slow  # quick subset (-m "not slow") within 90 s: a sweep or a real process
def test_jax_loop_styles_agree_with_each_other_on_the_tutorial_loss():
  problem = problems.abs_loss_problem()
  eager, *others = (_run(loop, problem, steps=500) for loop in JAX_LOOPS)
  for other in others:
    np.testing.assert_allclose(other.params, eager.params, atol=1e-6)
    np.testing.assert_allclose(other.losses, eager.losses, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, lr, steps", [("adam", 0.01, 1000), ("sgd", 0.01, 1000)])
def test_tutorial_loss_goes_down_to_its_optimum(name, lr, steps):
  problem = problems.abs_loss_problem()
  out = _run("scan", problem, name, lr, steps)
  assert out.losses[0] == 25.0  # the tutorial's loss at x = [2, 3]
  assert out.losses[-1] < 0.1 * out.losses[0]
  # 2x^2 + 3 = target -> x = [0, +-sqrt(0.5)]
  assert problem.distance_to_optimum(out.params) <= problem.optimum_tolerance(lr)
  np.testing.assert_allclose(np.abs(out.params), [0.0, np.sqrt(0.5)], atol=2 * lr)


@pytest.mark.parametrize("name", ["adam", "sgd", "rmsprop", "adamw", "lion", "adagrad"])
def test_fused_scan_agrees_with_the_other_loops(linreg, name):
  scan, fused, jit_step = (_run(loop, linreg, name, 0.05, 200)
                           for loop in ("scan", "scan_fused", "jit_step"))
  for other in (scan, jit_step):
    np.testing.assert_allclose(fused.params, other.params, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(fused.losses, other.losses, rtol=1e-5, atol=1e-6, err_msg=name)


def test_fusions_per_step_from_the_compiled_hlo():
  problem = problems.abs_loss_problem()
  counts = {loop: optimize.fusions_per_step(loop, problem, "adam", 0.01, 100)
            for loop in ("scan", "scan_fused", "jit_step", "eager", "numpy")}
  # scan: 9 kernels per 4 unrolled steps; the jitted step alone is 7 (one step, no loop).
  assert counts["scan"] <= 3 and counts["scan_fused"] <= 3
  assert counts["jit_step"] > counts["scan"]
  assert counts["eager"] is None and counts["numpy"] is None


@pytest.mark.parametrize("steps", [1, 7, 10])  # fewer than, and not a multiple of, SCAN_UNROLL
def test_unrolled_scan_runs_every_step(steps):
  problem = problems.abs_loss_problem()
  scan, jit_step = (_run(loop, problem, "adam", 0.01, steps) for loop in ("scan", "jit_step"))
  assert scan.losses.shape == (steps,)
  np.testing.assert_allclose(scan.params, jit_step.params, rtol=1e-6)
  np.testing.assert_allclose(scan.losses, jit_step.losses, rtol=1e-6)


@pytest.mark.parametrize("loop", ["scan", "scan_fused"])
def test_scan_is_one_program_init_included(loop):
  run = optimize.make_loop(loop, problems.abs_loss_problem(), "adam", 0.01, 10)
  lowered = run.lower()  # no arguments: the initial state is built inside the program
  assert "while" in lowered.as_text()
  with compile_cache.compile_events() as events:
    jax.block_until_ready((run(), run()))
  assert events.compiles <= 1


def test_linear_regression_reaches_lstsq(linreg):
  out = _run("jit_step", linreg, "adam", 0.05, 1000)
  features, labels = linreg.data
  solution = np.linalg.lstsq(features.astype(np.float64), labels.astype(np.float64), rcond=None)[0]
  np.testing.assert_allclose(out.params, solution, atol=1e-3)
  assert np.all(np.diff(out.losses[:50]) < 0)  # going down


def test_numpy_adam_is_optax_adam():
  grads_seq = [np.array([0.3, -1.0, 2.0], np.float64) * (k + 1) for k in range(5)]
  update = optimize.numpy_update("adam", 0.1)
  opt = optax.adam(0.1)
  params = jnp.zeros(3)
  state, numpy_state = opt.init(params), None
  for t, g in enumerate(grads_seq, start=1):
    want, state = opt.update(jnp.asarray(g, jnp.float32), state, params)
    got, numpy_state = update(g, numpy_state, t)
    # optax forms 1 - 0.999**t in float32: ~1e-7 absolute on ~1e-3, so ~1e-4 relative at most.
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_donation_never_breaks_the_callers_parameters():
  init = jnp.array([2.0, 3.0])
  problem = dataclasses.replace(problems.abs_loss_problem(), init_params=init)
  run = optimize.make_loop("jit_step", problem, "adam", 0.01, 20)
  out = run()
  again = run()  # a second fit starts from the same, still-valid, initial parameters
  assert not init.is_deleted()
  np.testing.assert_array_equal(init, [2.0, 3.0])
  np.testing.assert_array_equal(out.params, again.params)
  assert float(jnp.sum(init)) == 5.0


def test_optimizer_names_and_errors():
  names = optimize.optimizer_names()
  assert {"sgd", "adam", "adamw", "rmsprop"} <= set(names)
  with pytest.raises(ValueError, match="Unknown optimizer 'bogus'.*adam"):
    optimize.make_optimizer("bogus", 0.1)
  with pytest.raises(ValueError, match="learning_rate=-0.1: it must be > 0"):
    optimize.make_optimizer("adam", -0.1)
  with pytest.raises(ValueError, match="steps=0"):
    optimize.make_loop("scan", problems.abs_loss_problem(), "adam", 0.1, 0)
  with pytest.raises(ValueError, match="Unknown loop 'bogus'"):
    optimize.make_loop("bogus", problems.abs_loss_problem(), "adam", 0.1, 1)
  with pytest.raises(ValueError, match="peers implement sgd, adam, not 'lion'"):
    optimize.numpy_update("lion", 0.1)


def test_fit_all_rows(linreg):
  rows = fit.fit_all(["jit_step", "scan", "numpy"], linreg, "adam", 0.05, 200, min_run_time=0.01)
  for r in rows:
    assert r.ok and r.error is None and r.reference == "numpy float64"
    assert r.per_step_s == pytest.approx(r.total_s / 200) and r.first_call_s > 0
    assert r.max_param_diff <= linreg.param_tolerance(0.05)


def test_fit_reports_other_optimizers_against_scan():
  rows = fit.fit_all(["jit_step", "numpy"], problems.abs_loss_problem(), "rmsprop", 0.01, 100,
                     min_run_time=0.01)
  assert rows[0].ok and rows[0].reference == "scan"
  assert not rows[1].ok and "peers implement sgd, adam" in rows[1].error


@pytest.mark.slow
def test_optimize_cli_json(tmp_path):
  """The real-CLI smoke run."""
  path = tmp_path / "fit.json"
  result = run_module("experiments.optimize", "--steps=200", "--loops=jit_step,scan,numpy",
                      "--min_run_time=0.01", f"--output_json={path}")
  assert result.returncode == 0, result.stderr
  doc = json.loads(path.read_text())
  assert doc["machine"]["packages"]["optax"]
  rows = doc["results"]
  assert [r["loop"] for r in rows] == ["jit_step", "scan", "numpy"]
  for r in rows:
    for field in ("loop", "workload", "optimizer", "steps", "first_call_s", "per_step_s",
                  "total_s", "final_loss", "ok"):
      assert field in r
    assert r["ok"] and r["steps"] == 200 and r["workload"] == "abs_loss"
  assert "scan" in result.stdout and "per step" in result.stdout


@pytest.mark.peers
def test_optimize_cli_with_torch():
  if not peer_available("torch") and not os.environ.get("FUNCGRAD_REQUIRE_PEERS"):
    pytest.skip("torch not installed")
  # In-process: torch is imported once per test session, not once more in a subprocess.
  result = run_in_process("experiments.optimize", "--workload=linear_regression",
                          "--shape=200x5", "--steps=100", "--loops=numpy,torch",
                          "--min_run_time=0.01")
  assert result.returncode == 0, result.stderr
  assert "torch" in result.stdout and "WRONG" not in result.stdout


def test_compare_runs_fits_as_workloads(tmp_path):
  path = tmp_path / "r.json"
  result = run_in_process("experiments.compare", "--workloads=fit_linear_regression",
                          "--engines=numpy,jit,jit_scan", "--sizes=100x4", "--fit_steps=50",
                          "--min_run_time=0.01", f"--output_json={path}")
  assert result.returncode == 0, result.stderr
  rows = json.loads(path.read_text())["results"]
  assert [r["engine"] for r in rows] == ["numpy", "jit", "jit_scan"]
  assert all(r["ok"] and r["workload"] == "fit_linear_regression" for r in rows)
  assert all(r["steps_per_call"] == 50 and r["shape"] == [100, 4] for r in rows)
  assert all(r["reference"] == "numpy float64" for r in rows)
  assert "median per call of 50 steps" in result.stdout


@pytest.mark.parametrize("args, fragments", [
    (["--steps=0"], ["--steps=0", "[1, 100000]"]),
    (["--learning_rate=-0.5"], ["learning_rate=-0.5", "(0, 1000]"]),
    (["--optimizer=bogus"], ["'bogus'", "adam"]),
    (["--loops=bogus"], ["'bogus'", "eager, jit_step, scan, scan_fused"]),
    (["--workload=bogus"], ["--workload=bogus"]),
    (["--workload=linear_regression", "--shape=0x3"], ["'0x3'"]),
])
def test_bad_input_is_one_clear_line(args, fragments):
  assert_one_line_error(run_in_process("experiments.optimize", *args), *fragments)


def test_problems_unknown():
  with pytest.raises(ValueError, match="Unknown problem"):
    problems.get_problem("bogus")


def test_step_is_pure_and_jittable():
  problem = problems.abs_loss_problem()
  opt = optax.sgd(0.1)
  step = optimize.make_step(problem, opt)
  params = jnp.array(problem.init_params)
  state = opt.init(params)
  eager = step(params, state)
  jitted = jax.jit(step)(params, state)
  jax.tree.map(np.testing.assert_allclose, eager, jitted)
  assert float(eager[2]) == 25.0
  np.testing.assert_allclose(eager[0], params - 0.1 * jnp.array([8.0, 12.0]))


@pytest.mark.filterwarnings("ignore:Specifying a key:UserWarning")  # optax's noisy_sgd
@pytest.mark.parametrize("name", ["novograd", "optimistic_adam_v2", "noisy_sgd"])
def test_scan_keeps_scalar_state_that_cannot_be_widened(linreg, name):
  """A count used as a predicate (novograd), state that changes shape (optimistic_adam_v2) or a
  random key (noisy_sgd) stays scalar; the scan loop still matches the jitted step."""
  scan, jit_step = (_run(loop, linreg, name, 0.01, 6) for loop in ("scan", "jit_step"))
  np.testing.assert_allclose(scan.params, jit_step.params, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Specifying a key:UserWarning")
def test_optimizers_the_loops_cannot_run_are_one_line_errors():
  with pytest.raises(UsageError, match="'lbfgs' cannot run in these loops.*value_fn"):
    optimize.make_optimizer("lbfgs", 0.1)
  with pytest.raises(UsageError, match="random key, which does not ravel"):
    optimize.make_loop("scan_fused", problems.abs_loss_problem(), "noisy_sgd", 0.1, 5)
