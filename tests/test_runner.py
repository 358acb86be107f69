"""The sweep: check before timing, failures recorded, memory refusal, backend choice."""

import dataclasses

import jax
import numpy as np
import pytest

from funcgrad.bench import checks, engines, runner, workloads
from funcgrad.bench import roofline as roofline_lib
from funcgrad.bench.case import Case, Sweep, Timing, rows
from funcgrad.bench.roofline import Roofline
from funcgrad.bench.workloads.tutorial import ABS_LOSS, MULADD_SUM
from funcgrad.devices import platforms_present
from funcgrad.errors import UsageError

FAST = dict(timing=Timing(min_run_time=0.01, seed=0), dtype=np.dtype(np.float32))
NO_CACHE_ROOFLINE = {"cpu": Roofline(10.0, 10.0, 1, None)}


def _sweep(**kwargs) -> list[Case]:
  return Sweep(**{"backends": ["cpu"], **FAST, **kwargs}).cases()


def _swapped_numpy(workload, inputs, placement):
  """An engine with the tutorial's bug: grad_x and grad_y swapped."""
  prepared = engines.ENGINES["numpy"].prepare(workload, inputs, placement)
  value, gx, gy, gz = prepared.first_output
  return dataclasses.replace(prepared, first_output=(value, gy, gx, gz))


def _raising(workload, inputs, placement):
  del workload, inputs, placement
  raise MemoryError("pretend the device ran out of memory")


SWAPPED = engines.Engine("swapped", "numpy with grad_x/grad_y swapped", "numpy",
                         engines.ALL_KINDS, _swapped_numpy)
RAISING = engines.Engine("raising", "always raises", "numpy", engines.ALL_KINDS, _raising)


def test_sweep_rows_in_order_with_every_field():
  cases = _sweep(workloads=[MULADD_SUM, ABS_LOSS],
                 engines=[engines.ENGINES["numpy"], engines.ENGINES["jit"]], sizes=[(3, 4), (8, 8)])
  seen = []
  results = runner.run_sweep(cases, lambda r, i, n: seen.append((r.engine, i, n)),
                             NO_CACHE_ROOFLINE)
  assert [(r.workload, tuple(r.shape), r.engine) for r in results] == [
      ("muladd_sum", (3, 4), "numpy"), ("muladd_sum", (3, 4), "jit"),
      ("muladd_sum", (8, 8), "numpy"), ("muladd_sum", (8, 8), "jit"),
      ("abs_loss", (12,), "numpy"), ("abs_loss", (12,), "jit"),
      ("abs_loss", (64,), "numpy"), ("abs_loss", (64,), "jit")]
  assert seen[-1] == ("jit", 8, 8)
  for r in results:
    assert r.ok and r.status == runner.OK and r.error is None and r.max_rel_err <= r.tolerance
    assert r.median_s > 0 and r.blocks >= 3 and r.calls_per_block >= 1
    assert len(r.block_times_s) == r.blocks and r.interleaved
    assert r.median_s == pytest.approx(float(np.median(r.block_times_s)))
    assert r.gbps == pytest.approx(r.bytes / r.median_s / 1e9)
    assert r.pct_of_bandwidth == pytest.approx(100 * r.gbps / 10.0)
    assert r.backend == "cpu" and r.dtype == "float32" and r.reference == "numpy float64"
  jit = results[1]
  assert jit.trace_s > 0 and jit.lower_s > 0 and jit.compile_s > 0 and jit.dispatch_s > 0
  # One compilation: the stages are inside the first call they split. JAX times them with the
  # wall clock (time.time), the first call is timed with perf_counter: in a busy pytest worker
  # (both cores taken by other processes) their sum was seen 3% and 15% above the first call.
  # A stage counted from outside the call would be about twice it.
  assert jit.first_call_s >= 0.75 * (jit.trace_s + jit.lower_s + jit.compile_s)
  assert jit.compiles == 1
  assert jit.device_kind == jax.devices("cpu")[0].device_kind
  numpy_row = results[0]
  assert numpy_row.trace_s is None and numpy_row.dispatch_s is None and numpy_row.device == "host"
  # Interleaved: both engines of a case ran the same number of rounds.
  assert results[0].blocks == results[1].blocks


def test_eager_is_prepared_after_the_compiled_engines_and_compiles_nothing_while_timed():
  """Each JAX engine's cold first call empties JAX's caches: eager, asked for before jit, is
  prepared after it, so its warm-up and timed calls reuse its own first call's compiles."""
  prepared = []

  def recording(engine):
    def prepare(workload, inputs, placement):
      prepared.append(engine.name)
      return engine.prepare(workload, inputs, placement)
    return dataclasses.replace(engine, prepare=prepare)

  chosen = [recording(engines.ENGINES[n]) for n in ("numpy", "eager", "jit", "jit_packed")]
  results = runner.run_sweep(_sweep(workloads=[MULADD_SUM], engines=chosen, sizes=[(3, 4)]),
                             rooflines=NO_CACHE_ROOFLINE)
  assert prepared == ["numpy", "jit", "jit_packed", "eager"]
  assert [r.engine for r in results] == ["numpy", "eager", "jit", "jit_packed"]  # as asked
  assert all(r.ok for r in results)
  assert results[1].timed_compiles == 0 and results[1].compiles_per_call == 0


def test_a_failing_reference_fails_every_row_and_times_none():
  def broken(inputs):
    raise FloatingPointError("the reference overflowed")

  workload = dataclasses.replace(MULADD_SUM, reference=broken)
  chosen = [engines.ENGINES[n] for n in ("numpy", "jit", "eager")]
  results = runner.run_sweep(_sweep(workloads=[workload], engines=chosen, sizes=[(3, 4)]),
                             rooflines=NO_CACHE_ROOFLINE)
  assert [r.engine for r in results] == ["numpy", "jit", "eager"]
  for r in results:
    assert r.status == runner.FAILED and not r.ok and r.median_s is None
    assert r.first_call_s is None  # a row whose check never ran shows no first call
    assert r.error.startswith("the reference run failed: FloatingPointError: the reference "
                              "overflowed")


def test_result_fields_are_fixed():
  result = runner.Result("w", "e", "cpu", [1], "float32", 1)
  with pytest.raises(AttributeError):
    result.median = 1.0  # a misspelt field raises instead of adding an attribute


def test_wrong_output_is_marked_and_never_timed():
  cases = _sweep(workloads=[MULADD_SUM], engines=[SWAPPED, engines.ENGINES["numpy"]],
                 sizes=[(3, 4)])
  wrong, right = runner.run_sweep(cases, rooflines={})
  assert not wrong.ok and wrong.status == runner.WRONG and wrong.max_rel_err > wrong.tolerance
  assert "differs from the numpy float64 reference" in wrong.error
  assert wrong.median_s is None and wrong.blocks is None  # not timed
  assert right.ok


def test_raising_row_is_recorded_and_sweep_goes_on():
  cases = _sweep(workloads=[MULADD_SUM], engines=[RAISING, engines.ENGINES["numpy"]],
                 sizes=[(3, 4), (5, 5)])
  results = runner.run_sweep(cases, rooflines={})
  assert [r.ok for r in results] == [False, True, False, True]
  assert results[0].status == runner.FAILED
  assert results[0].error.startswith("MemoryError: pretend the device ran out of memory")
  assert results[0].max_rel_err is None


def test_engine_a_workload_does_not_implement_is_marked_not_failed():
  cases = _sweep(workloads=[MULADD_SUM],
                 engines=[engines.ENGINES["jit_scan"], engines.ENGINES["jit"]], sizes=[(3, 4)])
  scan, jit = runner.run_sweep(cases, rooflines={})
  assert scan.status == runner.NOT_IMPLEMENTED and "not implemented for muladd_sum" in scan.error
  assert jit.ok


@pytest.mark.slow  # quick subset (-m "not slow") within 90 s: a sweep or a real process
def test_fit_workload_runs_through_the_same_runner():
  fit = workloads.fit_workload("linear_regression", steps=5)
  chosen = [engines.ENGINES[n] for n in ("numpy", "eager", "jit", "jit_scan", "jit_packed")]
  cases = _sweep(workloads=[fit], engines=chosen, sizes=[(40, 3)])
  by_engine = {r.engine: r for r in runner.run_sweep(cases, rooflines={})}
  for name in ("numpy", "eager", "jit", "jit_scan"):
    row = by_engine[name]
    assert row.ok, row.error
    if name.startswith("jit"):  # one compilation of the step (or the scan), inside the call
      assert row.compiles == 1
      assert row.first_call_s >= row.trace_s + row.lower_s + row.compile_s
    assert row.steps_per_call == 5 and row.shape == [40, 3]
    assert row.max_rel_err <= row.tolerance
  assert by_engine["jit_packed"].status == runner.NOT_IMPLEMENTED


def test_mesh_is_refused_for_workloads_that_are_not_split():
  fit = workloads.fit_workload("abs_loss", steps=5)
  cases = _sweep(workloads=[fit], engines=[engines.ENGINES["jit"]], sizes=[(2,)],
                 mesh_shape=(1,))
  with pytest.raises(UsageError, match="mesh does not apply to workload fit_abs_loss"):
    checks.check_mesh(cases)
  with pytest.raises(UsageError, match="mesh does not apply to workload fit_abs_loss"):
    runner.run_sweep(cases, rooflines={})  # the sweep checks before it runs


def test_memory_refusal_before_allocation():
  cases = _sweep(workloads=[MULADD_SUM], engines=[engines.ENGINES["numpy"]],
                 sizes=[(3, 4), (1_000_000, 1_000_000)])
  with pytest.raises(UsageError, match=r"Size 1000000x1000000 of muladd_sum needs about .* GiB "
                     r"on cpu for 1 engine, .* Pick a smaller size or fewer engines\."):
    checks.check_fits(cases)
  # Before the engines are known (finding the peers imports them): a size that even one engine
  # cannot hold is refused at once.
  with pytest.raises(UsageError, match=r"for even one engine, .* Pick a smaller size\.$"):
    checks.check_fits(_sweep(workloads=[MULADD_SUM], engines=[], sizes=[(1_000_000, 1_000_000)]))
  with pytest.raises(UsageError, match=r"Size 1000000x1000000 of muladd_sum"):
    runner.run_sweep(cases, rooflines={})  # refused before the first case runs
  checks.check_fits(_sweep(workloads=[MULADD_SUM], engines=[engines.ENGINES["numpy"]],
                           sizes=[(1000, 1000)]))


def test_footprint_estimate():
  # 6 arrays of 100 float32 moved once per engine, plus the float64 reference of them.
  moved = MULADD_SUM.bytes_moved((10, 10), 4)
  assert checks.footprint_bytes(MULADD_SUM, (10, 10), np.dtype(np.float32), engines=2) == \
      moved * 3 + moved * 2


def test_cache_resident_rows_claim_no_share_of_dram_bandwidth():
  cases = _sweep(workloads=[MULADD_SUM], engines=[engines.ENGINES["numpy"]], sizes=[(3, 4)])
  (row,) = runner.run_sweep(cases, rooflines={"cpu": Roofline(10.0, 5.0, 2, 1 << 20)})
  assert row.cache_resident and row.pct_of_bandwidth is None and row.gbps > 0


def test_backends():
  assert checks.resolve_backends(None, False) == list(platforms_present())
  assert checks.resolve_backends(["cpu", "cpu"], False) == ["cpu"]
  with pytest.raises(UsageError, match="Unknown backend 'xpu' in --backends"):
    checks.resolve_backends(["xpu"], False)


@pytest.mark.skipif("gpu" in platforms_present(), reason="a GPU is present")
def test_absent_backend_is_an_error_unless_skipped():
  with pytest.raises(UsageError, match="Backend 'gpu' in --backends is not present here"):
    checks.resolve_backends(["cpu", "gpu"], False)
  assert checks.resolve_backends(["cpu", "gpu"], True) == ["cpu"]
  with pytest.raises(UsageError, match="None of the backends"):
    checks.resolve_backends(["gpu"], True)


def test_a_long_sweep_says_so_before_it_starts():
  cases = _sweep(workloads=[MULADD_SUM], engines=[engines.ENGINES["numpy"]] * 2,
                 sizes=[(3, 4), (5, 5)])
  assert rows(cases) == 4 and runner.long_run_note(cases) is None
  long = [dataclasses.replace(c, timing=Timing(min_run_time=60.0)) for c in cases]
  assert runner.minimum_seconds(long) == pytest.approx(4 * 60 * 1.2)
  assert runner.long_run_note(long).startswith("note: 4 rows x --min_run_time=60 s: at least 5 min")


def _timed_row(**kw):
  row = runner.Result(workload="mlp", engine="jit", backend="cpu", shape=[128, 512],
                      dtype="float32", n_elements=1, status=runner.OK, median_s=1e-3)
  for name, value in kw.items():
    setattr(row, name, value)
  return row


def test_a_row_above_its_peak_has_the_peak_measured_again():
  old = roofline_lib.Roofline(copy_bandwidth_gbps=20.0, peak_gflops=94.0)
  fast = _timed_row(bound="compute", gflops=150.0, peak_gflops=94.0, pct_of_peak_flops=160.0)
  slow = _timed_row(engine="numpy", bound="compute", gflops=90.0, peak_gflops=94.0,
                    pct_of_peak_flops=96.0)
  asked = []

  def remeasure(previous):
    asked.append(previous)
    return roofline_lib.Roofline(copy_bandwidth_gbps=20.0, peak_gflops=190.0)

  runner.recheck_peaks([fast, slow], old, remeasure)
  assert asked == [old]
  assert fast.peak_gflops == slow.peak_gflops == 190.0
  assert round(fast.pct_of_peak_flops) == 79 and round(slow.pct_of_peak_flops) == 47
  assert fast.peak_disturbed is False and slow.peak_disturbed is False


def test_a_row_still_above_the_remeasured_peak_is_marked_disturbed():
  old = roofline_lib.Roofline(copy_bandwidth_gbps=20.0)
  row = _timed_row(gbps=25.0, bandwidth_gbps=20.0, pct_of_bandwidth=125.0)
  runner.recheck_peaks([row], old, lambda previous: previous)
  assert row.peak_disturbed is True and row.pct_of_bandwidth == 125.0


def test_rows_within_their_peaks_measure_nothing_again():
  old = roofline_lib.Roofline(copy_bandwidth_gbps=20.0, peak_gflops=94.0)
  cached = _timed_row(gbps=80.0, bandwidth_gbps=20.0, cache_resident=True)  # not compared
  within = _timed_row(engine="numpy", bound="compute", gflops=90.0, pct_of_peak_flops=96.0)
  runner.recheck_peaks([cached, within], old, lambda previous: pytest.fail("re-measured"))
  assert cached.peak_disturbed is None and within.peak_disturbed is None


def test_all_engines_means_the_ones_that_run_each_workload():
  from funcgrad.bench import plan  # noqa: PLC0415

  every = list(engines.ENGINES.values())
  cases = _sweep(workloads=[workloads.get_workload("muladd_sum"),
                            workloads.get_workload("fit_abs_loss")], engines=every,
                 sizes=[(3, 4)])
  kept = {c.workload.name: [e.name for e in c.engines] for c in plan.applicable(cases)}
  assert "jit_scan" not in kept["muladd_sum"] and "jit" in kept["muladd_sum"]
  assert "jit_scan" in kept["fit_abs_loss"]
  assert not {"jit_packed", "tf_eager", "tf_function", "tf_xla"} & set(kept["fit_abs_loss"])
  assert all(e.missing(c.workload) is None for c in plan.applicable(cases) for e in c.engines)
  assert "jit_scan, jit_scan_fused: train workloads" in plan.ALL_ENGINES_NOTE
