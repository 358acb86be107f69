"""Performance targets: each measured ratio beside its goal, PASS or MISS, as data and Markdown."""

import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

from funcgrad import outputs
from funcgrad._tables import render_markdown

DISTURBED_PEAK = "DISTURBED PEAK"


@dataclasses.dataclass(frozen=True)
class Target:
  """One target.

  Attributes:
    name: short identifier ('jit_pct_of_copy_bandwidth_4000x4000').
    measured: the measured value (None when it could not be measured).
    target: the goal.
    unit: '%', 'x' (a ratio) or 'ns'.
    at_least: True when measured must be >= target, False when <=.
    detail: what was compared, with the raw numbers.
    of_peak: `measured` is a percentage of a measured peak (copy bandwidth, matmul rate): above
      100% the peak was measured while something else ran, and the target cannot pass.
  """

  name: str
  measured: float | None
  target: float
  unit: str
  at_least: bool
  detail: str = ""
  of_peak: bool = False

  @property
  def disturbed_peak(self) -> bool:
    """A share above 100% of its peak: the peak, not the row, is what was wrong."""
    return self.of_peak and self.measured is not None and self.measured > 100

  @property
  def passed(self) -> bool:
    if self.measured is None or self.disturbed_peak:
      return False
    return self.measured >= self.target if self.at_least else self.measured <= self.target

  @property
  def result(self) -> str:
    """'PASS', 'MISS', or 'DISTURBED PEAK' (never a pass)."""
    if self.disturbed_peak:
      return DISTURBED_PEAK
    return "PASS" if self.passed else "MISS"

  def to_dict(self) -> dict[str, Any]:
    return {"name": self.name, "measured": self.measured, "target": self.target,
            "unit": self.unit, "pass": self.passed, "result": self.result,
            "comparison": ">=" if self.at_least else "<=", "detail": self.detail}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
  """numerator / denominator, or None when either is missing or the denominator is 0."""
  if numerator is None or denominator is None or denominator == 0:
    return None
  return numerator / denominator


def _number(value: float | None, unit: str) -> str:
  if value is None:
    return "not measured"
  return f"{value:.3g}{' ' + unit if unit != 'x' else 'x'}"


def render(targets: Sequence[Target]) -> str:
  """A Markdown table: target, measured, goal, PASS/MISS/DISTURBED PEAK, detail."""
  rows = [[t.name, _number(t.measured, t.unit),
           f"{'>=' if t.at_least else '<='} {_number(t.target, t.unit)}",
           t.result, t.detail] for t in targets]
  return render_markdown(["target", "measured", "goal", "result", "detail"], rows)


def json_document(machine: dict[str, Any], targets: Sequence[Target],
                  complete: bool = True) -> str:
  """`{"machine": ..., "targets": [{name, measured, target, unit, pass, ...}], "complete"}`
  (`complete` is false for a run interrupted before its last target)."""
  document = {"machine": machine, "targets": [t.to_dict() for t in targets],
              "complete": complete}
  return outputs.dumps(document) + "\n"


def exit_status(rows_ok: bool, results: Sequence[Target], strict: bool) -> int:
  """1 for a wrong or failed row, or (with `strict`) a missed target; 0 otherwise."""
  if not rows_ok:
    return 1
  missed = [t.name for t in results if not t.passed]
  if strict and missed:
    print(f"--strict: {len(missed)} of {len(results)} targets missed: {', '.join(missed)}",
          file=sys.stderr)
    return 1
  return 0
