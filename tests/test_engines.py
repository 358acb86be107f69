"""Every engine computes the right values (real peers: torch and TensorFlow, not mocks)."""

import os

import jax
import numpy as np
import pytest

from funcgrad.bench import engines
from funcgrad.bench.workloads import WORKLOADS, max_rel_error, tolerance
from funcgrad.peers import PeerUnavailableError, import_peer

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
  want, scales = workload.reference(*inputs)
  prepared = engine.prepare(workload, inputs, jax.devices("cpu")[0])
  first = prepared.to_numpy(prepared.first_output)
  assert max_rel_error(first, want, scales) <= tolerance(dtype)
  again = prepared.to_numpy(prepared.sync(prepared.call()))
  assert max_rel_error(again, want, scales) <= tolerance(dtype)
  assert prepared.stages["first_call_s"] > 0
  return prepared


@pytest.mark.parametrize("workload", WORKLOADS.values(), ids=WORKLOADS)
@pytest.mark.parametrize("engine", CORE_ENGINES, ids=lambda e: e.name)
def test_core_engines_agree_with_reference(engine, workload):
  _check(engine, workload, size=(17, 9))


@pytest.mark.peers
@pytest.mark.parametrize("workload", WORKLOADS.values(), ids=WORKLOADS)
@pytest.mark.parametrize("engine", [e for e in PEER_ENGINES if e.name != "torch_compile"],
                         ids=lambda e: e.name)
def test_peer_engines_agree_with_reference(engine, workload):
  _check(engine, workload, size=(17, 9))


@pytest.mark.peers
@pytest.mark.slow
def test_torch_compile_agrees_with_reference():
  # One workload only: Inductor compiles C++ on first use (seconds to tens of seconds here).
  prepared = _check(engines.ENGINES["torch_compile"], WORKLOADS["muladd_sum"])
  assert prepared.device == "cpu:0"


def test_jit_times_each_stage_and_dispatch():
  prepared = _check(engines.ENGINES["jit"], WORKLOADS["muladd_sum"])
  assert set(prepared.stages) == {"trace_s", "lower_s", "compile_s", "first_call_s"}
  assert all(v > 0 for v in prepared.stages.values())
  # A cold first call traces, lowers and compiles again: it cannot be cheaper than compiling.
  assert prepared.stages["first_call_s"] > prepared.stages["compile_s"]
  assert prepared.measure_dispatch
  assert prepared.device == "cpu:0" and prepared.device_kind == "cpu"


def test_numpy_runs_on_host_whatever_the_backend():
  prepared = _check(engines.ENGINES["numpy"], WORKLOADS["abs_loss"])
  assert prepared.device == "host" and not prepared.measure_dispatch


def test_bfloat16_jit():
  _check(engines.ENGINES["jit"], WORKLOADS["muladd_sum"], dtype=jax.numpy.bfloat16)


def test_missing_peer_names_the_extra():
  ghost = engines.Engine("ghost", "a peer that is not installed", "funcgrad_no_such_module",
                         lambda w, i, d: None)
  assert not ghost.available()
  with pytest.raises(PeerUnavailableError, match=r"funcgrad\[peers\]"):
    import_peer("funcgrad_no_such_module")


def test_unknown_engine():
  with pytest.raises(ValueError, match="Unknown engine 'bogus'. Valid: numpy, eager, jit"):
    engines.get_engine("bogus")


@pytest.mark.gpu
@pytest.mark.parametrize("engine", ["eager", "jit"])
def test_jax_engines_on_gpu(engine):
  workload = WORKLOADS["muladd_sum"]
  inputs = workload.make_inputs((64, 64), np.float32, seed=1)
  want, scales = workload.reference(*inputs)
  prepared = engines.ENGINES[engine].prepare(workload, inputs, jax.devices("gpu")[0])
  assert prepared.device == "cuda:0"
  assert max_rel_error(prepared.to_numpy(prepared.first_output), want, scales) <= 1e-5
