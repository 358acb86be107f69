"""The benchmark's answer-holds targets, on rows with known block times."""

import jax
import pytest

from funcgrad.bench import stability
from funcgrad.bench.runner import Result

QUIET = {"other_processes": 0.01, "other_engines": 0.0, "steal": 0.0}


def _row(engine, blocks, shape=(1000,), shares=QUIET, isolation="cooldown"):
  blocks = list(blocks)
  return Result(workload="w", engine=engine, backend="cpu", shape=list(shape), dtype="float32",
                n_elements=1000, status="ok", ok=True, block_times_s=blocks,
                median_s=sorted(blocks)[len(blocks) // 2], interference=shares,
                isolation=isolation, calls_per_block=1)


def _run(ratio, spread=0.0):
  jit = [1e-3 * (1 + spread * (i % 3 - 1)) for i in range(9)]
  return [_row("jit", jit), _row("numpy", [t * ratio for t in jit]),
          _row("jit", [1e-6] * 9, shape=(3,)), _row("numpy", [3e-6] * 9, shape=(3,))]


def test_agreement_is_the_worst_gap_over_rows_of_at_least_ten_microseconds():
  target = stability.agreement_target([_run(2.0), _run(2.1)], "jit", 0.05, "median")
  assert target.measured == pytest.approx(100 * 0.1 / 2.0)  # the 1 us rows left out
  assert target.passed
  assert "over 1 speedups" in target.detail and "at --precision=0.05" in target.detail
  assert "interference up to 1% other processes" in target.detail
  assert stability.agreement_target([_run(2.0), _run(2.5)], "jit", None, "median").measured == \
      pytest.approx(25.0)


def test_coverage_counts_each_ratio_inside_the_other_runs_interval():
  runs = [_run(2.0, 0.01), _run(2.0, 0.01), _run(3.0, 0.01)]
  target = stability.coverage_target(runs, "jit", None, "median")
  # 2 sizes x 3 pairs x 2 directions = 12 checks. Runs 1 and 2 cover each other at both sizes
  # (4); run 3's ratio at 1000 elements lies outside the others' (0 of 4), and at 3 elements
  # every run's ratio is 3.0 (4 of 4).
  assert target.measured == pytest.approx(100 * 8 / 12)
  assert "12 (ratio, other run's interval) pairs over 3 runs" in target.detail


def test_isolation_and_other_engines_targets():
  beside = [_row("numpy", [2e-3] * 5), _row("jit", [1.05e-3] * 5)]
  alone = [_row("jit", [1e-3] * 5)]
  target = stability.isolation_target(beside, alone, "attention 256x256")
  assert target.measured == pytest.approx(1.05) and target.passed
  assert target.name == "isolation: jit beside numpy / jit alone, attention 256x256"
  busy = {"other_processes": 0.0, "other_engines": 0.03, "steal": 0.0}
  worst = stability.other_engines_target([*beside, _row("torch_eager", [1e-3], shares=busy)])
  assert worst.measured == pytest.approx(3.0) and not worst.passed
  assert "torch_eager on w 1000" in worst.detail
  assert stability.other_engines_target([_row("jit", [1.0], shares=None)]).measured is None


def test_estimator_target_compares_both_estimators_on_the_same_rounds():
  # One outlying block moves the ratio of minima from 2x to 1x; the median of per-round ratios
  # stays at 2x.
  def run(lucky):
    jit = [1e-3 * (1.5 if i % 2 else 1.0) for i in range(9)]
    numpy = [2 * t for t in jit]
    if lucky:
      numpy[0] = 1e-3  # one block of numpy's as fast as jit's: the minima say 1.0x
    return [_row("jit", jit), _row("numpy", numpy)]

  target = stability.estimator_target([run(True), run(False)], "jit", "median")
  assert target.name == "estimator: median gap / min gap, back to back"
  assert target.measured is not None and target.passed
  assert "same rounds, 2 runs: median: median gap" in target.detail and "min: median gap" in \
      target.detail


def test_looped_loss_does_twice_the_work_for_twice_the_trips():
  # XLA's own count of the compiled gradient's flops: the matmuls dominate and double.
  def flops(trips):
    grad = jax.jit(jax.grad(stability.looped_loss(trips), argnums=(0, 1)))
    return grad.lower(stability._W, stability._X).compile().cost_analysis()["flops"]
  assert flops(64) / flops(32) == pytest.approx(2.0, rel=0.03)
  assert stability.looped_loss(3).__qualname__ == stability.looped_loss(5).__qualname__


def test_distance_of_an_interval_from_a_value():
  assert stability.distance_from(2.0, 1.5, 2.5) == 0.0
  assert stability.distance_from(2.0, 2.2, 2.6) == pytest.approx(10.0)
  assert stability.distance_from(2.0, 1.2, 2.0 / 1.1) == pytest.approx(10.0)
  assert stability.distance_from(2.0, 1.0, 1.25) == pytest.approx(60.0)


def test_change_detection_targets_from_known_verdicts():
  from funcgrad.bench.baselines import Change  # noqa: PLC0415

  def change(engine, ratio, low, high, verdict):
    return Change("cpu", "looped_loss", [128, 64], engine, ratio, low, high, verdict)

  class Fake:
    def __init__(self, changes):
      self.changes, self.results = changes, []

    def save(self, path):
      del path

  answers = iter([Fake([]), Fake([change("eager", 1.01, 0.97, 1.05, "no change"),
                                  change("jit", 1.3, 1.2, 1.4, "slower")]),
                  Fake([change("eager", 1.95, 1.7, 2.3, "slower"),
                        change("jit", 1.6, 1.5, 1.7, "slower")])])
  out = stability.change_detection_targets(lambda *a, **k: next(answers), 1, 0.01)
  assert out[0].measured == 50.0 and not out[0].passed and "jit 1.300x slower" in out[0].detail
  assert out[1].measured == 0.0 and out[1].passed  # [1.7, 2.3] holds 2
  assert out[2].measured == pytest.approx(100 * (2 / 1.7 - 1)) and not out[2].passed
