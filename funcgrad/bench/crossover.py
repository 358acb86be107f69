"""The size at which the baseline starts to win: a geometric grid of sizes and its crossovers."""

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from funcgrad.bench.speedups import Speedup
from funcgrad.bench.workloads.model import Workload
from funcgrad.errors import UsageError
from funcgrad.shapes import Shape

MIN_ELEMENTS = 12  # the tutorial's 3x4
GRID_FACTOR = 4  # each size has four times the elements of the one before
DEFAULT_PRECISION = 0.05  # experiments.crossover's --precision: each size's interval +-5% ...
DEFAULT_MAX_RUN_TIME = 2.0  # ... or 2 s of rounds per size


@dataclasses.dataclass(frozen=True, slots=True)
class Crossover:
  """Where `baseline` starts to beat `engine`, and how sure that is.

  Attributes:
    crossover_elements: the smallest swept size (in elements) at which the baseline's 95%
      interval over `engine` lies wholly above 1; None when it never does in range.
    band_low_elements: the largest size below that at which the interval lies wholly below 1
      (`engine` surely faster); None when there is none.
    band_high_elements: the first size at which the baseline is surely faster (the crossover).
      Between the two the interval straddles 1: the crossover is somewhere in that band, and two
      runs give bands that overlap where one-size answers need not agree.
    unresolved: sizes whose speedup missed the precision target (none without a target).
  """

  engine: str
  baseline: str
  crossover_elements: int | None
  band_low_elements: int | None = None
  band_high_elements: int | None = None
  unresolved: list[int] = dataclasses.field(default_factory=list)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def geometric_sizes(max_elements: int, workload: Workload) -> list[Shape]:
  """3x4, 6x8, 12x16, ... (both sides doubled: four times the elements each) up to
  `max_elements`; the same element counts as N for 1-D workloads.

  Raises:
    UsageError: for `max_elements` below MIN_ELEMENTS.
  """
  if max_elements < MIN_ELEMENTS:
    raise UsageError(f"Invalid --max_elements={max_elements}: expected at least {MIN_ELEMENTS} "
                     "(the tutorial's 3x4).")
  steps = int(math.log(max_elements / MIN_ELEMENTS, GRID_FACTOR) + 1e-9)
  sides = [(3 * 2**k, 4 * 2**k) for k in range(steps + 1)]
  return [side if workload.ndim == 2 else (math.prod(side),) for side in sides]


def crossovers(speedups: Sequence[Speedup], baseline: str) -> list[Crossover]:
  """Per engine, the smallest size whose interval lies wholly above 1."""
  by_engine: dict[str, list[Speedup]] = {}
  for s in speedups:
    if s.baseline == baseline:
      by_engine.setdefault(s.engine, []).append(s)
  out = []
  for engine, rows in by_engine.items():
    winning = [math.prod(s.shape) for s in rows if s.ci_low > 1]
    high = min(winning) if winning else None
    losing = [math.prod(s.shape) for s in rows
              if s.ci_high < 1 and (high is None or math.prod(s.shape) < high)]
    unresolved = sorted(math.prod(s.shape) for s in rows if s.resolved is False)
    out.append(Crossover(engine, baseline, high, max(losing) if losing else None, high,
                         unresolved))
  return out


def _band(p: Crossover) -> str:
  low = (f"up to {p.band_low_elements:,}" if p.band_low_elements is not None
         else "at no size swept")
  high = (f"from {p.band_high_elements:,}" if p.band_high_elements is not None
          else "at no size swept")
  return f"band: {p.engine} surely faster {low}, {p.baseline} surely faster {high}"


def render(points: Sequence[Crossover], workload: str) -> str:
  """One line per engine."""
  lines = []
  for p in points:
    where = (f"from {p.crossover_elements:,} elements on" if p.crossover_elements is not None
             else "nowhere in the range swept")
    lines.append(f"{workload}: {p.baseline} is faster than {p.engine} (95% interval above 1) "
                 f"{where}; {_band(p)}")
    if p.unresolved:
      lines.append(f"  unresolved (missed the precision target): "
                   f"{', '.join(f'{n:,}' for n in p.unresolved)} elements")
  return "\n".join(lines)


def plot(path: str, speedups: Sequence[Speedup], points: Sequence[Crossover]) -> None:
  """Speedup with its interval against elements, one line per engine, the crossover marked."""
  from funcgrad.bench.report import _pyplot, atomic_savefig  # noqa: PLC0415

  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6, 4))
  for engine in dict.fromkeys(s.engine for s in speedups):
    rows = sorted((s for s in speedups if s.engine == engine), key=lambda s: math.prod(s.shape))
    x = [math.prod(s.shape) for s in rows]
    ax.errorbar(x, [s.ratio for s in rows],
                yerr=[[s.ratio - s.ci_low for s in rows], [s.ci_high - s.ratio for s in rows]],
                marker="o", capsize=2, label=f"{rows[0].baseline} over {engine}")
    point = next((p for p in points if p.engine == engine), None)
    if point and point.crossover_elements:
      ax.axvline(point.crossover_elements, linestyle="--", alpha=0.5)
  ax.axhline(1.0, color="black", linewidth=0.8)
  ax.set(xscale="log", yscale="log", xlabel="elements", ylabel="speedup (95% interval)",
         title="speedup against size; dashed: crossover")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize="small")
  fig.tight_layout()
  atomic_savefig(fig, path)
  plt.close(fig)
