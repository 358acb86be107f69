"""Fits: every loop style (an engine over the fit workload) reaches the same parameters, the
optimum, through the runner; the scan program runs every step; donation is safe."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcgrad import compile_cache, graphs, optimize, problems
from funcgrad.bench import engines, fitting
from funcgrad.bench.case import Placement, Timing
from funcgrad.bench.runner import NOT_IMPLEMENTED
from funcgrad.bench.workloads.fits import fit_problem_workload
from funcgrad.bench.workloads.model import REFERENCE_NUMPY, REFERENCE_X64
from funcgrad.errors import UsageError
from funcgrad.peers import peer_available
from tests.cli import run_in_process
from tests.helpers import assert_one_line_error, quick_first

JAX_LOOPS = ["eager", "jit_step", "scan", "scan_fused"]
LINREG = ("linear_regression", (200, 5), 1)  # problem, shape, seed
ABS = ("abs_loss", (2,), 0)


def _prepare(loop, problem=ABS, name="adam", lr=0.01, steps=300):
  """The loop's engine prepared on the fit workload: its first call is the whole fit."""
  workload = fit_problem_workload(problem[0], optimize.Fit(name, lr, steps))
  inputs = workload.make_inputs(problem[1], np.dtype(np.float32), problem[2])
  engine = engines.ENGINES[fitting.LOOPS[loop]]
  return engine.prepare(workload, inputs, Placement(jax.devices()[0]))


def _run(loop, problem=ABS, name="adam", lr=0.01, steps=300):
  """(final parameters, loss before the last step) of a whole fit."""
  return _prepare(loop, problem, name, lr, steps).first_output


def _losses(problem, name="adam", lr=0.01, steps=300):
  """Final parameters and the loss before every step, from the scan program itself."""
  made = problems.get_problem(problem[0], problem[1], problem[2])
  opt = optax.sgd(lr) if name == "sgd" else optimize.make_optimizer(name, lr)
  step = optimize.train_step(functools.partial(made.loss, jnp), opt)
  params = jnp.asarray(made.init_params)
  out = jax.jit(optimize.scan_steps(step, steps))(params, opt.init(params), *made.data)
  return np.asarray(out[0]), np.asarray(out[2])


def _numpy64(problem, name, lr, steps):
  made = problems.get_problem(problem[0], problem[1], problem[2])
  return optimize.numpy_steps(
      made.numpy_loss_and_grad, optimize.Fit(name, lr, steps),
      {"params": np.asarray(made.init_params, np.float64)},
      tuple(np.asarray(d, np.float64) for d in made.data))


@pytest.mark.parametrize("name", quick_first("sgd", "adam"))
def test_every_loop_matches_the_float64_reference_on_a_smooth_problem(name):
  want_params, want_loss = _numpy64(LINREG, name, 0.05, 300)
  loops = JAX_LOOPS + ["numpy"] + (["torch"] if peer_available("torch") else [])
  for loop in loops:
    params, loss = _run(loop, LINREG, name, 0.05)
    np.testing.assert_allclose(params, want_params, atol=1e-4, err_msg=loop)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-4, atol=1e-5, err_msg=loop)


@pytest.mark.slow  # quick subset (-m "not slow") within 90 s: a sweep or a real process
def test_jax_loop_styles_agree_with_each_other_on_the_tutorial_loss():
  eager, *others = (_run(loop, steps=500) for loop in JAX_LOOPS)
  for other in others:
    np.testing.assert_allclose(other[0], eager[0], atol=1e-6)
    np.testing.assert_allclose(other[1], eager[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, lr, steps", [("adam", 0.01, 1000), ("sgd", 0.01, 1000)])
def test_tutorial_loss_goes_down_to_its_optimum(name, lr, steps):
  problem = problems.abs_loss_problem()
  params, losses = _losses(ABS, name, lr, steps)
  assert losses.shape == (steps,)
  assert losses[0] == 25.0  # the tutorial's loss at x = [2, 3]
  assert losses[-1] < 0.1 * losses[0]
  # 2x^2 + 3 = target -> x = [0, +-sqrt(0.5)]
  assert problem.distance_to_optimum(params) <= problem.optimum_tolerance(lr)
  np.testing.assert_allclose(np.abs(params), [0.0, np.sqrt(0.5)], atol=2 * lr)
  np.testing.assert_allclose(_run("scan", ABS, name, lr, steps)[0], params, rtol=1e-6)


@pytest.mark.parametrize("name", quick_first("adam", "sgd", "rmsprop", "adamw", "lion", "adagrad"))
def test_fused_scan_agrees_with_the_other_loops(name):
  scan, fused, jit_step = (_run(loop, LINREG, name, 0.05, 200)
                           for loop in ("scan", "scan_fused", "jit_step"))
  for other in (scan, jit_step):
    np.testing.assert_allclose(fused[0], other[0], atol=1e-5, err_msg=name)
    np.testing.assert_allclose(fused[1], other[1], rtol=1e-5, atol=1e-6, err_msg=name)


def test_fusions_per_step_from_the_compiled_hlo():
  workload = fit_problem_workload("abs_loss", optimize.Fit("adam", 0.01, 100))
  inputs = workload.make_inputs((2,), np.dtype(np.float32), 0)
  counts = {loop: engines.fusions_per_step(engines.ENGINES[fitting.LOOPS[loop]], workload, inputs)
            for loop in ("scan", "scan_fused", "jit_step", "eager", "numpy")}
  # scan: 9 kernels per 4 unrolled steps; the jitted step alone is 7 (one step, no loop).
  assert counts["scan"] <= 3 and counts["scan_fused"] <= 3
  assert counts["jit_step"] > counts["scan"]
  assert counts["eager"] is None and counts["numpy"] is None


def test_graphs_fusions_per_step_counts_loop_bodies_times_trips():
  def twice(x):
    return jax.lax.fori_loop(0, 8, lambda i, v: jnp.sin(v) * 2 + 1, x)

  hlo = graphs.compiled_hlo_text(twice, jnp.ones(3))
  assert graphs.fusions_per_step(hlo, 8) >= 1  # one fused body a trip, 8 trips, 8 steps
  step = graphs.compiled_hlo_text(lambda x: jnp.sin(x) * 2 + 1, jnp.ones(3))
  assert graphs.fusions_per_step(step, 1) == graphs.count_fusions(step)


@pytest.mark.parametrize("steps", quick_first(7, 1, 10))  # vs SCAN_UNROLL: not a multiple, fewer
def test_unrolled_scan_runs_every_step(steps):
  scan, jit_step = (_run(loop, ABS, "adam", 0.01, steps) for loop in ("scan", "jit_step"))
  np.testing.assert_allclose(scan[0], jit_step[0], rtol=1e-6)
  np.testing.assert_allclose(scan[1], jit_step[1], rtol=1e-6)
  assert _losses(ABS, "adam", 0.01, steps)[1].shape == (steps,)


@pytest.mark.parametrize("loop", ["scan", "scan_fused"])
def test_scan_is_one_program(loop):
  prepared = _prepare(loop, steps=10)  # the first call compiles
  with compile_cache.compile_events() as events:
    for _ in range(2):
      jax.block_until_ready(prepared.call())
  assert events.compiles == 0  # the carried (widened) state keeps its shapes: no recompile
  made = problems.abs_loss_problem()
  step = optimize.train_step(functools.partial(made.loss, jnp), optax.adam(0.01))
  params = jnp.asarray(made.init_params)
  lowered = jax.jit(optimize.scan_steps(step, 10, loop == "scan_fused")).lower(
      params, optax.adam(0.01).init(params), *made.data)
  assert "while" in lowered.as_text()


def test_linear_regression_reaches_lstsq():
  params, _ = _run("jit_step", LINREG, "adam", 0.05, 1000)
  features, labels = problems.get_problem(*LINREG).data
  solution = np.linalg.lstsq(features.astype(np.float64), labels.astype(np.float64), rcond=None)[0]
  np.testing.assert_allclose(params, solution, atol=1e-3)
  assert np.all(np.diff(_losses(LINREG, "adam", 0.05, 50)[1]) < 0)  # going down


def test_numpy_adam_is_optax_adam():
  grads_seq = [np.array([0.3, -1.0, 2.0], np.float64) * (k + 1) for k in range(5)]
  update = optimize.numpy_update("adam", 0.1)
  opt = optax.adam(0.1, b1=optimize.ADAM_B1, b2=optimize.ADAM_B2, eps=optimize.ADAM_EPS)
  params = jnp.zeros(3)
  state, numpy_state = opt.init(params), None
  for t, g in enumerate(grads_seq, start=1):
    want, state = opt.update(jnp.asarray(g, jnp.float32), state, params)
    got, numpy_state = update(g, numpy_state, t)
    # optax forms 1 - 0.999**t in float32: ~1e-7 absolute on ~1e-3, so ~1e-4 relative at most.
    np.testing.assert_allclose(got, want, rtol=1e-4)
  # and they are optax.adam's defaults, which the JAX loops use
  assert jax.tree.all(jax.tree.map(np.array_equal, optax.adam(0.1).update(
      jnp.ones(3), optax.adam(0.1).init(params))[0], opt.update(jnp.ones(3), opt.init(params))[0]))


def test_donation_never_breaks_the_callers_parameters():
  workload = fit_problem_workload("abs_loss", optimize.Fit("adam", 0.01, 20))
  init, target = jnp.array([2.0, 3.0]), jnp.array([3.0, 4.0])
  where = Placement(jax.devices()[0])
  first = engines.ENGINES["jit"].prepare(workload, (init, target), where)
  jax.block_until_ready(first.call())  # a timed call donates the carried parameters
  again = engines.ENGINES["jit_scan"].prepare(workload, (init, target), where)
  assert not init.is_deleted()
  np.testing.assert_array_equal(init, [2.0, 3.0])
  np.testing.assert_allclose(first.first_output[0], again.first_output[0], rtol=1e-6)
  assert float(jnp.sum(init)) == 5.0


def test_optimizer_names_and_errors():
  names = optimize.optimizer_names()
  assert {"sgd", "adam", "adamw", "rmsprop"} <= set(names)
  with pytest.raises(ValueError, match="Unknown optimizer 'bogus'.*adam"):
    optimize.make_optimizer("bogus", 0.1)
  with pytest.raises(ValueError, match="learning_rate=-0.1: it must be > 0"):
    optimize.Fit("adam", -0.1, 10)
  with pytest.raises(ValueError, match="steps=0"):
    optimize.Fit("adam", 0.1, 0)
  with pytest.raises(ValueError, match="Unknown loop 'bogus'"):
    fitting.run_fit("abs_loss", (2,), optimize.Fit(), ["bogus"])
  with pytest.raises(ValueError, match="peers implement sgd, adam, not 'lion'"):
    optimize.numpy_update("lion", 0.1)


def test_run_fit_rows_through_the_runner():
  rows = fitting.run_fit("linear_regression", (200, 5), optimize.Fit("adam", 0.05, 200),
                         ["jit_step", "scan", "numpy"], Timing(0.01, seed=1))
  assert [r.loop for r in rows] == ["jit_step", "scan", "numpy"]
  assert [r.result.engine for r in rows] == ["jit", "jit_scan", "numpy"]
  for r in rows:
    assert r.result.ok and r.result.error is None and r.result.reference == REFERENCE_NUMPY
    assert r.result.steps_per_call == 200 and r.result.first_call_s > 0
    assert r.per_step_s == pytest.approx(r.result.median_s / 200)
    assert r.result.max_rel_err <= r.result.tolerance
    assert r.final_loss == pytest.approx(_numpy_final_loss(), rel=1e-3)
    assert r.to_dict()["loop"] == r.loop and r.to_dict()["total_s"] == r.result.median_s
  assert rows[0].fusions_per_step > rows[1].fusions_per_step > 0
  assert rows[2].fusions_per_step is None


def _numpy_final_loss():
  made = problems.get_problem(*LINREG)
  params, _ = _numpy64(LINREG, "adam", 0.05, 200)
  return made.numpy_loss_and_grad(params, *(np.asarray(d, np.float64) for d in made.data))[0]


def test_fit_checks_other_optimizers_against_a_float64_rerun():
  rows = fitting.run_fit("abs_loss", (2,), optimize.Fit("rmsprop", 0.01, 100),
                         ["jit_step", "numpy"], Timing(0.01))
  assert rows[0].result.ok and rows[0].result.reference == REFERENCE_X64
  assert rows[1].result.status == NOT_IMPLEMENTED and "no numpy program" in rows[1].result.error


@pytest.mark.slow
def test_optimize_cli_json(tmp_path):
  """In-process (the same parse and run); tests/test_hostile_outputs.py runs it in a process."""
  path = tmp_path / "fit.json"
  result = run_in_process("experiments.optimize", "--steps=200", "--loops=jit_step,scan,numpy",
                          "--min_run_time=0.01", f"--output_json={path}")
  assert result.returncode == 0, result.stderr
  doc = json.loads(path.read_text())
  assert doc["machine"]["packages"]["optax"]
  rows = doc["results"]
  assert [r["loop"] for r in rows] == ["jit_step", "scan", "numpy"]
  for r in rows:
    for field in ("loop", "engine", "workload", "optimizer", "steps", "first_call_s",
                  "per_step_s", "total_s", "final_loss", "fusions_per_step", "ok"):
      assert field in r
    assert r["ok"] and r["steps"] == 200 and r["workload"] == "fit_abs_loss"
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
  with pytest.raises(ValueError, match="Unknown problem.*abs_loss, linear_regression"):
    problems.get_problem("bogus")
  assert set(problems.PROBLEMS) == {"abs_loss", "linear_regression"}


def test_step_is_pure_and_jittable():
  problem = problems.abs_loss_problem()
  opt = optax.sgd(0.1)
  step = optimize.train_step(functools.partial(problem.loss, jnp), opt)
  params = jnp.array(problem.init_params)
  state = opt.init(params)
  eager = step(params, state, *problem.data)
  jitted = jax.jit(step)(params, state, *problem.data)
  jax.tree.map(np.testing.assert_allclose, eager, jitted)
  assert float(eager[2]) == 25.0
  np.testing.assert_allclose(eager[0], params - 0.1 * jnp.array([8.0, 12.0]))


@pytest.mark.filterwarnings("ignore:Specifying a key:UserWarning")  # optax's noisy_sgd
@pytest.mark.parametrize("name", quick_first("novograd", "optimistic_adam_v2", "noisy_sgd"))
def test_scan_keeps_scalar_state_that_cannot_be_widened(name):
  """A count used as a predicate (novograd), state that changes shape (optimistic_adam_v2) or a
  random key (noisy_sgd) stays scalar; the scan loop still matches the jitted step."""
  scan, jit_step = (_run(loop, LINREG, name, 0.01, 6) for loop in ("scan", "jit_step"))
  np.testing.assert_allclose(scan[0], jit_step[0], rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Specifying a key:UserWarning")
def test_optimizers_the_loops_cannot_run_are_one_line_errors():
  with pytest.raises(UsageError, match="'lbfgs' cannot run in these loops.*value_fn"):
    optimize.make_optimizer("lbfgs", 0.1)
  with pytest.raises(UsageError, match="random key, which does not ravel"):
    _prepare("scan_fused", ABS, "noisy_sgd", 0.1, 5)
