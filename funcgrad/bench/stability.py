"""Targets that ask whether an answer holds: back-to-back agreement and coverage at a precision
target, change detection against a saved baseline, and the time a 5% answer takes.

Each target is measured by running the real thing (`funcgrad.compare`, the runner's sweep) and
states the interference it saw, so that a run on a busy machine explains its own miss.
"""

import itertools
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from funcgrad.bench import interference, runner
from funcgrad.bench import speedups as speedups_lib
from funcgrad.bench.intervals import ESTIMATORS
from funcgrad.bench.targets import Target
from funcgrad.shapes import format_shape

AGREEMENT_FLOOR_S = 10e-6  # speedups of rows faster than this are left out of agreement
AGREEMENT_GOAL = 10.0  # %, at most: the worst gap between two back-to-back runs' speedups
COVERAGE_GOAL = 80.0  # % of pairs of runs where each ratio lies in the other's interval
NO_CHANGE_GOAL = 95.0  # % of rows compared with their own baseline that say `no change`
ANSWER_PRECISION = 0.05
ANSWER_GOAL_S = 10.0
_W = np.random.default_rng(0).standard_normal((256, 64), np.float32)  # the README's tanh layer
_X = np.random.default_rng(1).standard_normal((128, 256), np.float32)


def tanh_layer_loss(w, x):
  """The README's example function."""
  return jnp.sum(jnp.tanh(x @ w) ** 2)


def busiest(rows: Sequence[runner.Result]) -> str:
  """`other processes up to P%, other engines up to Q% of the machine` over `rows`."""
  worst = {k: max((r.interference or {}).get(k) or 0.0 for r in rows) if rows else 0.0
           for k in interference.SOURCES}
  return (f"interference up to {100 * worst['other_processes']:.0f}% other processes, "
          f"{100 * worst['other_engines']:.1f}% other engines, {100 * worst['steal']:.0f}% steal")


def _key(s: speedups_lib.Speedup) -> tuple[str, str, tuple[int, ...], str]:
  return (s.backend, s.workload, tuple(s.shape), s.engine)


def _slow_enough(rows: Sequence[runner.Result], baseline: str) -> set[tuple]:
  """Keys of speedups whose engine and baseline rows both have medians >= AGREEMENT_FLOOR_S."""
  medians = {(r.backend, r.workload, tuple(r.shape), r.engine): r.median_s or 0.0 for r in rows}
  return {k for k in medians
          if medians[k] >= AGREEMENT_FLOOR_S and medians.get((*k[:3], baseline), 0.0) >=
          AGREEMENT_FLOOR_S}


def agreement_target(runs: Sequence[Sequence[runner.Result]], baseline: str,
                     precision: float | None, estimator: str) -> Target:
  """`ratio agreement, back to back`: the worst relative gap between the first two runs'
  speedups, over those whose rows have medians >= 10 us."""
  first, second = (speedups_lib.speedups(r, baseline, 0, estimator, precision) for r in runs[:2])
  slow = _slow_enough([*runs[0], *runs[1]], baseline)
  again = {_key(s): s for s in second}
  gaps = [(abs(a.ratio - again[_key(a)].ratio) / min(a.ratio, again[_key(a)].ratio), a,
           again[_key(a)]) for a in first if _key(a) in again and _key(a) in slow]
  worst = max(gaps, key=lambda g: g[0], default=None)
  where = f"at --precision={precision:g}" if precision else "without a precision target"
  detail = (f"{where}, over {len(gaps)} speedups of {baseline}; worst: {worst[1].workload} "
            f"{format_shape(worst[1].shape)} {worst[1].engine} {worst[1].ratio:.3g}x vs "
            f"{worst[2].ratio:.3g}x" if worst else "no speedups")
  return Target("ratio agreement, back to back", worst and 100 * worst[0], AGREEMENT_GOAL, "%",
                False,
                f"{detail}; {busiest([*runs[0], *runs[1]])}")


def coverage_target(runs: Sequence[Sequence[runner.Result]], baseline: str,
                    precision: float | None, estimator: str) -> Target:
  """`interval coverage, back to back`: over every pair of runs and every speedup both have,
  the share of (ratio, other run's interval) pairs where the ratio lies inside."""
  found = [{_key(s): s for s in speedups_lib.speedups(r, baseline, 0, estimator, precision)}
           for r in runs]
  inside = []
  for a, b in itertools.combinations(found, 2):
    for key in a.keys() & b.keys():
      inside += [b[key].ci_low <= a[key].ratio <= b[key].ci_high,
                 a[key].ci_low <= b[key].ratio <= a[key].ci_high]
  share = 100 * float(np.mean(inside)) if inside else None
  rows = [r for run in runs for r in run]
  return Target("interval coverage, back to back", share, COVERAGE_GOAL, "%", True,
                f"{len(inside)} (ratio, other run's interval) pairs over {len(runs)} runs; "
                f"{busiest(rows)}")


def looped_loss(trips: int) -> Callable[..., Any]:
  """`trips` tanh layers of 64 units in a row: the same function name, `trips` times the work.

  Every trip is the same 128x64 @ 64x64 matmul and tanh (forward and backward), and nothing
  else is comparable in cost, so doubling `trips` doubles the time for jit as for eager (an
  elementwise loop would not: XLA fuses it into one pass that the matmul outweighs).
  """
  def looped(w, x):
    m = w[:64] * 0.125  # keeps tanh out of saturation: y @ m has unit variance
    y = x[:, :64]
    for _ in range(trips):
      y = jnp.tanh(y @ m)
    return jnp.sum(y ** 2)
  looped.__qualname__ = looped.__name__ = "looped_loss"
  return looped


def change_detection_targets(compare: Callable[..., Any], repeats: int, min_run_time: float,
                             trips: int = 32) -> list[Target]:
  """`change detection`: a function compared with its own saved baseline `repeats` times gives
  `no change` on >= 95% of rows; twice the work gives `slower` with the interval within 10% of
  2.0 (jit's row: eager's per-op cost also doubles, so both rows are reported)."""
  w, x = _W, _X
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "baseline.json")
    compare(looped_loss(trips), w, x, min_run_time=min_run_time).save(path)
    same = [c for _ in range(repeats)
            for c in compare(looped_loss(trips), w, x, min_run_time=min_run_time,
                             compare_to=path).changes]
    double = compare(looped_loss(2 * trips), w, x, min_run_time=min_run_time,
                     compare_to=path)
  quiet = 100 * sum(c.verdict == "no change" for c in same) / len(same) if same else None
  moved = ", ".join(f"{c.engine} {c.ratio:.3f}x {c.verdict}" for c in same
                    if c.verdict != "no change")
  out = [Target("change detection: own baseline gives no change", quiet, NO_CHANGE_GOAL, "%",
                True, f"{len(same)} rows ({repeats} runs x eager, jit) against one saved run"
                f"{'; changed: ' + moved if moved else ''}; {busiest(double.results)}")]
  for c in double.changes:
    out.append(Target(f"change detection: twice the work, {c.engine}: interval's distance from 2x",
                      distance_from(2.0, c.ci_low, c.ci_high) if c.verdict == "slower" else None,
                      TWICE_GOAL, "%", False,
                      f"{c.verdict}, new/old {c.ratio:.3f}x [{c.ci_low:.3f}, {c.ci_high:.3f}] "
                      f"({2 * trips} loop trips against {trips}); PASS needs 'slower' with the "
                      "interval within 10% of 2.0"))
  return out


TWICE_GOAL = 10.0  # %: how far the interval of twice the work may end from 2.0


def distance_from(value: float, low: float, high: float) -> float:
  """How far [low, high] is from `value`, in % of it (0 when it holds it): low / value - 1
  above it, value / high - 1 below it."""
  return 100 * max(0.0, low / value - 1, value / high - 1)


def time_to_answer_target(compare: Callable[..., Any], precision: float = ANSWER_PRECISION,
                          min_run_time: float = 0.2) -> Target:
  """`time to a 5% answer`: wall time of `funcgrad.compare` on the README's tanh layer, eager
  against jit, with `precision=0.05` (checks and compiles included; `min_run_time`: compare's
  default); MISS when unresolved."""
  start = time.perf_counter()
  comparison = compare(tanh_layer_loss, _W, _X, argnums=(0, 1), precision=precision,
                       min_run_time=min_run_time)
  seconds = time.perf_counter() - start
  (s,) = comparison.speedups
  return Target(f"time to a {precision:.0%} answer (tanh layer, eager vs jit)",
                seconds if s.resolved else None, ANSWER_GOAL_S, "s", False,
                f"{seconds:.1f} s, jit over eager {s.ratio:.3g}x [{s.ci_low:.3g}, "
                f"{s.ci_high:.3g}], half-width {100 * s.half_width:.1f}% "
                f"({'resolved' if s.resolved else 'unresolved'}) after {s.rounds} rounds; "
                f"{busiest(comparison.results)}")


ISOLATION_GOAL = 1.10  # jit after another engine's blocks / jit alone
OTHER_ENGINES_GOAL = 2.0  # % of the machine's CPU time, during any row's blocks


def _jit_median(rows: Sequence[runner.Result]) -> runner.Result | None:
  return next((r for r in rows if r.engine == "jit" and r.ok), None)


def isolation_target(beside: Sequence[runner.Result], alone: Sequence[runner.Result],
                     label: str) -> Target:
  """`isolation`: jit's median timed in rounds beside another engine (NumPy) over jit's median
  timed alone, in the same isolation mode."""
  with_peer, by_itself = _jit_median(beside), _jit_median(alone)
  ratio = (with_peer.median_s / by_itself.median_s
           if with_peer and by_itself and by_itself.median_s else None)
  peers = ", ".join(sorted({r.engine for r in beside} - {"jit"}))
  mode = with_peer.isolation if with_peer else "?"
  return Target(f"isolation: jit beside {peers} / jit alone, {label}", ratio, ISOLATION_GOAL,
                "x", False, f"isolation {mode}: jit {with_peer.median_s * 1e3:.2f} ms beside "
                f"{peers}, {by_itself.median_s * 1e3:.2f} ms alone; {busiest([*beside, *alone])}"
                if ratio else "a jit row failed")


def other_engines_target(rows: Sequence[runner.Result]) -> Target:
  """`other engines during a block`: the largest `other_engines` share of any timed row."""
  timed = [r for r in rows if r.interference and r.interference.get("other_engines") is not None]
  worst = max(timed, key=lambda r: r.interference["other_engines"], default=None)
  share = 100 * worst.interference["other_engines"] if worst else None
  modes = "/".join(sorted({r.isolation or "?" for r in timed})) or "?"
  return Target("other engines during any row's blocks", share, OTHER_ENGINES_GOAL, "%", False,
                f"isolation {modes}, worst of {len(timed)} rows: {worst.engine} on "
                f"{worst.workload} {format_shape(worst.shape)}" if worst else
                "no interference measured (no /proc)")


def _spread(runs: Sequence[Sequence[runner.Result]], baseline: str,
            estimator: str) -> tuple[float | None, float | None]:
  """(median relative gap between every pair of runs' speedups, coverage %) for `estimator`."""
  found = [{_key(s): s for s in speedups_lib.speedups(r, baseline, 0, estimator)} for r in runs]
  slow = _slow_enough([r for run in runs for r in run], baseline)
  gaps, inside = [], []
  for a, b in itertools.combinations(found, 2):
    for key in a.keys() & b.keys() & slow:
      gaps.append(abs(a[key].ratio - b[key].ratio) / min(a[key].ratio, b[key].ratio))
      inside += [b[key].ci_low <= a[key].ratio <= b[key].ci_high,
                 a[key].ci_low <= b[key].ratio <= a[key].ci_high]
  return (float(np.median(gaps)) if gaps else None,
          100 * float(np.mean(inside)) if inside else None)


def estimator_target(runs: Sequence[Sequence[runner.Result]], baseline: str,
                     default: str) -> Target:
  """`estimator`: the default estimator's median back-to-back gap over the other's, both from
  the very same rounds (the same measuring time); <= 1 means the default agrees better."""
  other = next(e for e in ESTIMATORS if e != default)
  mine, theirs = _spread(runs, baseline, default), _spread(runs, baseline, other)
  ratio = None
  if mine[0] is not None and theirs[0] is not None:
    ratio = mine[0] / theirs[0] if theirs[0] > 0 else (1.0 if mine[0] == 0 else float("inf"))
  def say(name, spread):
    gap, cover = spread
    return (f"{name}: median gap {100 * gap:.1f}%, coverage {cover:.0f}%" if gap is not None
            else f"{name}: no pairs")
  return Target(f"estimator: {default} gap / {other} gap, back to back", ratio, 1.0, "x", False,
                f"same rounds, {len(runs)} runs: {say(default, mine)}; {say(other, theirs)}")
