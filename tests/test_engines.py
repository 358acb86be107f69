"""Every engine computes the right values (real peers: torch and TensorFlow, not mocks)."""

import os
import re

import jax
import numpy as np
import pytest

from funcgrad import peers
from funcgrad.bench import engines, workloads
from funcgrad.bench.case import Placement
from funcgrad.bench.workloads import WORKLOADS
from funcgrad.bench.workloads.model import max_rel_error
from funcgrad.bench.workloads.user import user_function, user_workload
from funcgrad.errors import UsageError
from funcgrad.peers import PeerUnavailableError, import_peer

# The tutorial's losses and the fits (short ones: a call is `steps` Adam steps).
TESTED = {"muladd_sum": WORKLOADS["muladd_sum"], "abs_loss": WORKLOADS["abs_loss"],
          "fit_abs_loss": workloads.fit_workload("abs_loss", steps=20),
          "fit_linear_regression": workloads.fit_workload("linear_regression", steps=20)}
# Which engines implement which kind of workload (everything else is marked not implemented).
NOT_FOR_TRAINING = ("jit_packed", "tf_eager", "tf_function", "tf_xla")

PEER_ENGINES = [e for e in engines.ENGINES.values() if e.requires is not None]
CORE_ENGINES = [e for e in engines.ENGINES.values() if e.requires is None]


def _require(engine):
  if engine.available():
    return
  if os.environ.get("FUNCGRAD_REQUIRE_PEERS"):
    pytest.fail(f"{engine.requires} must be installed here (FUNCGRAD_REQUIRE_PEERS is set)")
  pytest.skip(f"{engine.requires} not installed")


def _check(engine, workload, size=(3, 4), dtype=np.float32):
  _require(engine)
  shape = workload.shape_for(size)
  inputs = workload.make_inputs(shape, dtype, seed=1)
  reference = workload.expected(inputs)
  want, scales = reference.outputs, reference.scales
  expected_gap = (engine.name in NOT_FOR_TRAINING and workload.kind == "train") or (
      engine.name in ("jit_scan", "jit_scan_fused") and workload.kind != "train")
  assert (engine.missing(workload) is not None) == expected_gap, engine.missing(workload)
  if expected_gap:
    return None
  prepared = engine.prepare(workload, inputs, Placement(jax.devices("cpu")[0]))
  assert max_rel_error(prepared.first_output, want, scales) <= workload.tolerance(dtype)
  if workload.kind != "train":  # a training call continues from the last: a new answer
    again = prepared.to_numpy(prepared.sync(prepared.call()))
    assert max_rel_error(again, want, scales) <= workload.tolerance(dtype)
  assert prepared.stages.first_call_s > 0
  return prepared


@pytest.mark.parametrize("workload", TESTED.values(), ids=TESTED)
@pytest.mark.parametrize("engine", CORE_ENGINES, ids=lambda e: e.name)
def test_core_engines_agree_with_reference(engine, workload):
  _check(engine, workload, size=(17, 9))


@pytest.mark.peers
@pytest.mark.parametrize("workload", TESTED.values(), ids=TESTED)
@pytest.mark.parametrize("engine", [e for e in PEER_ENGINES if e.name != "torch_compile"],
                         ids=lambda e: e.name)
def test_peer_engines_agree_with_reference(engine, workload):
  _check(engine, workload, size=(17, 9))


def test_training_call_carries_state_from_call_to_call():
  fit = TESTED["fit_linear_regression"]
  inputs = fit.make_inputs((30, 2), np.float32, 0)
  prepared = engines.ENGINES["jit"].prepare(fit, inputs, Placement(jax.devices("cpu")[0]))
  second = prepared.to_numpy(prepared.sync(prepared.call()))
  # Forty steps in all now: the float64 reference of a 40-step fit.
  forty = workloads.fit_workload("linear_regression", steps=40).expected(inputs)
  assert max_rel_error(second, forty.outputs, forty.scales) <= fit.tolerance(np.float32)
  np.testing.assert_array_equal(inputs[0], np.zeros(2, np.float32))  # the caller's array intact


@pytest.mark.peers
@pytest.mark.slow
def test_torch_compile_agrees_with_reference():
  # One workload only: Inductor compiles C++ on first use (seconds to tens of seconds here).
  prepared = _check(engines.ENGINES["torch_compile"], WORKLOADS["muladd_sum"])
  assert prepared.device == "cpu:0"


def test_jit_times_each_stage_and_dispatch():
  prepared = _check(engines.ENGINES["jit"], WORKLOADS["muladd_sum"])
  stages = prepared.stages
  assert stages.trace_s > 0 and stages.lower_s > 0 and stages.compile_s > 0
  # One compilation: the stages are JAX's events inside the first call, which contains them.
  assert stages.first_call_s >= stages.trace_s + stages.lower_s + stages.compile_s
  assert prepared.measure_dispatch
  assert prepared.device == "cpu:0" and prepared.device_kind == "cpu"


def test_numpy_runs_on_host_whatever_the_backend():
  prepared = _check(engines.ENGINES["numpy"], WORKLOADS["abs_loss"])
  assert prepared.device == "host" and not prepared.measure_dispatch


def test_bfloat16_jit():
  _check(engines.ENGINES["jit"], WORKLOADS["muladd_sum"], dtype=jax.numpy.bfloat16)


def test_engines_declare_family_and_kinds():
  kinds = {name: set(e.kinds) for name, e in engines.ENGINES.items()}
  assert kinds["jit_packed"] == {"value_and_grad", "value"} and kinds["jit_scan"] == {"train"}
  assert kinds["jit_scan_fused"] == {"train"}
  assert kinds["tf_xla"] == {"value_and_grad"} and "value" in kinds["torch_eager"]
  assert {e.family for e in engines.ENGINES.values()} == {"numpy", "jax", "torch", "tf"}
  assert engines.JAX_ENGINES == ("eager", "jit", "jit_packed")
  user = user_workload(user_function(lambda x: (x**2).sum(), (np.ones(3),)))  # no peers
  assert "no torch program" in engines.ENGINES["torch_eager"].missing(user)
  assert engines.ENGINES["jit"].missing(user) is None
  with pytest.raises(ValueError, match="family"):
    engines.Engine("bad", "an unknown family", "mxnet", {"value"}, lambda w, i, p: None)


def test_missing_peer_names_the_extra(monkeypatch):
  monkeypatch.setitem(engines.FAMILIES, "torch", "funcgrad_no_such_module")
  ghost = engines.ENGINES["torch_eager"]
  assert ghost.requires == "funcgrad_no_such_module" and not ghost.available()
  with pytest.raises(PeerUnavailableError, match=re.escape(".[peers]")):
    import_peer("funcgrad_no_such_module")


def test_unknown_engine():
  with pytest.raises(UsageError, match="Unknown engine 'bogus'. Valid: numpy, eager, jit"):
    engines.get_engine("bogus")


@pytest.mark.gpu
@pytest.mark.parametrize("engine", ["eager", "jit"])
def test_jax_engines_on_gpu(engine):
  workload = WORKLOADS["muladd_sum"]
  inputs = workload.make_inputs((64, 64), np.float32, seed=1)
  reference = workload.expected(inputs)
  prepared = engines.ENGINES[engine].prepare(workload, inputs, Placement(jax.devices("gpu")[0]))
  assert prepared.device == "cuda:0"
  assert max_rel_error(prepared.first_output, reference.outputs, reference.scales) <= 1e-5


@pytest.mark.parametrize("before, verbose, after", [
    (None, False, "2"), (None, True, "0"),
    ("1", False, "2"), ("1", True, "0"),  # 1 is what `import jax` sets when it is unset
    ("3", True, "3"), ("0", False, "0")])  # a user's own level wins
def test_native_log_level(monkeypatch, before, verbose, after):
  if before is None:
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
  else:
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", before)
  peers.set_native_log_level(verbose)
  assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == after
