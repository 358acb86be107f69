"""A `Comparison` in a notebook: an HTML table (Jupyter's `_repr_html_`) and a speedup plot.

The table has one row per engine: the median time per call with its interquartile range, the
first call, and the baseline's speedup over that engine with its 95% interval and the calls after
which the baseline's compile has paid for itself. The plot shows the same speedups as points
with their intervals, on a log scale around 1 (the baseline's own speed).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from funcgrad.bench import report
from funcgrad.bench.runner import OK
from funcgrad.errors import UsageError

if TYPE_CHECKING:
  from funcgrad.bench.comparison import Comparison
  from funcgrad.bench.speedups import Speedup

_COLUMNS = ("engine", "median per call", "IQR", "first call", "speedup", "95% interval",
            "pays back after")


def _speedup_cells(speedup: Speedup | None, is_baseline: bool) -> list[str]:
  if is_baseline:
    return ["1x (baseline)", "", ""]
  if speedup is None:
    return ["", "", ""]
  return [f"{speedup.ratio:.3g}x", f"[{speedup.ci_low:.3g}x, {speedup.ci_high:.3g}x]",
          report.break_even_label(speedup)]


def _caption(comparison: Comparison) -> str:
  first = comparison.results[0]
  shape = report.shape_label(first.shape)
  return (f"{first.workload} {shape} on {first.backend} ({first.dtype}): median per call and "
          f"the speedup of {comparison.baseline} over each engine (median of per-round ratios, "
          "95% bootstrap interval)")


def comparison_html(comparison: Comparison) -> str:
  """The comparison as an HTML table, one row per engine (what Jupyter shows for it).

  A row that did not run (wrong output, an error) shows its status in place of its times.
  """
  by_engine = {s.engine: s for s in comparison.speedups}
  head = "".join(f"<th>{html.escape(c)}</th>" for c in _COLUMNS)
  rows = []
  for result in comparison.results:
    if result.status == OK:
      times = [report.format_seconds(result.median_s), report.format_seconds(result.iqr_s),
               report.format_seconds(result.first_call_s)]
    else:
      times = [f"{report.status_label(result)}: {result.error or ''}", "", ""]
    cells = [result.engine, *times, *_speedup_cells(by_engine.get(result.engine),
                                                    result.engine == comparison.baseline)]
    rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
  return (f"<table><caption>{html.escape(_caption(comparison))}</caption>"
          f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def plot_speedups(comparison: Comparison, ax: Any = None) -> Any:
  """Plots the baseline's speedup over each engine with its 95% interval; returns the Axes.

  Args:
    comparison: what `funcgrad.compare` returned.
    ax: a matplotlib Axes to draw on (default: a new figure's).

  Raises:
    UsageError: without matplotlib (the `plot` extra), or when no engine was timed against the
      baseline.
  """
  if not comparison.speedups:
    raise UsageError(f"Nothing to plot: no engine was timed against {comparison.baseline}.")
  try:
    from matplotlib import pyplot  # noqa: PLC0415 - optional extra; the notebook's own backend
  except ImportError:
    raise UsageError("plot() needs matplotlib: pip install 'funcgrad[plot]'.") from None
  if ax is None:
    _, ax = pyplot.subplots(figsize=(6, 1.8 + 0.4 * len(comparison.speedups)))
  found = comparison.speedups
  ys = range(len(found))
  ratios = [s.ratio for s in found]
  errors = [[s.ratio - s.ci_low for s in found], [s.ci_high - s.ratio for s in found]]
  ax.errorbar(ratios, list(ys), xerr=errors, fmt="o", capsize=4)
  ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
  ax.set_yticks(list(ys), [s.engine for s in found])
  ax.set_xscale("log")
  low = min(min(s.ci_low for s in found), 1.0)
  high = max(max(s.ci_high for s in found), 1.0)
  ax.set_xlim(low / 1.5, high * 1.5)
  for y, s in zip(ys, found, strict=True):
    ax.annotate(f"{s.ratio:.3g}x", (s.ratio, y), textcoords="offset points", xytext=(0, 7),
                ha="center", fontsize=8)
  first = comparison.results[0]
  ax.set_xlabel(f"speedup of {comparison.baseline} (x, log scale; > 1: {comparison.baseline} "
                "faster), 95% interval")
  ax.set_title(f"{first.workload} {report.shape_label(first.shape)} on {first.backend}")
  return ax

