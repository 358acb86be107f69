"""Results as data first (JSON, CSV, JSONL), text second (a Compare-style table), and a plot.

JSON and CSV are written atomically (a temporary file in the same folder, then `os.replace`), so
a reader never sees half a file. JSONL is appended and flushed row by row, so a sweep killed midway
keeps every finished row.
"""

import csv
import dataclasses
import io
import json
import math
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from funcgrad._tables import render_text
from funcgrad.bench.runner import Result

FIELDS = tuple(f.name for f in dataclasses.fields(Result))
STAGES = (("trace_s", "jit trace"), ("lower_s", "jit lower"), ("compile_s", "jit compile"),
          ("dispatch_s", "jit dispatch"))


_UNITS = (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9))


def _unit_for(seconds: float) -> tuple[str, float]:
  return next(((u, scale) for u, scale in _UNITS if seconds >= scale), _UNITS[-1])


def _number(value: float) -> str:
  text = f"{value:.3g}"
  return f"{value:.0f}" if "e" in text else text


def format_seconds(seconds: float | None, unit: tuple[str, float] | None = None) -> str:
  """'8.8 us', '1.23 ms', '2.5 s': three significant digits, in `unit` or the largest that fits."""
  if seconds is None or not math.isfinite(seconds):
    return "-"
  name, scale = unit or _unit_for(seconds)
  return f"{_number(seconds / scale)} {name}"


def shape_label(shape: Sequence[int]) -> str:
  return "x".join(map(str, shape))


def _cell(result: Result | None) -> str:
  if result is None:
    return ""
  if result.error is not None or result.median_s is None:
    return "FAILED" if result.max_rel_err is None or result.ok else "WRONG"
  unit = _unit_for(result.median_s)
  iqr = format_seconds(result.iqr_s, unit).split()[0]
  cell = f"{format_seconds(result.median_s, unit)} ±{iqr}"
  if result.pct_of_bandwidth is not None and result.pct_of_bandwidth >= 1:
    cell += f" ({result.pct_of_bandwidth:.0f}%)"
  return cell + (" *" if result.noisy else "")


def _grouped(results: Sequence[Result]) -> dict[tuple[str, str, str], list[Result]]:
  groups: dict[tuple[str, str, str], list[Result]] = {}
  for r in results:
    groups.setdefault((r.workload, r.backend, r.dtype), []).append(r)
  return groups


def _block(rows: dict[str, dict[str, Any]], columns: list[str]) -> str:
  return render_text(["size", *columns],
                     [[size, *(cells.get(c, "") for c in columns)] for size, cells in rows.items()])


def render_compare(results: Sequence[Result]) -> str:
  """torch.utils.benchmark.Compare-style text: per workload and backend, a block of steady-state
  times (rows: size, columns: engine), then a block of first-call and jit stage times."""
  out = []
  for (workload, backend, dtype), group in _grouped(results).items():
    engines = list(dict.fromkeys(r.engine for r in group))
    steady: dict[str, dict[str, str]] = {}
    cold: dict[str, dict[str, str]] = {}
    for r in group:
      size = shape_label(r.shape)
      steady.setdefault(size, {})[r.engine] = _cell(r)
      cold.setdefault(size, {})[f"{r.engine} first"] = format_seconds(r.first_call_s)
      for field, label in STAGES:
        if getattr(r, field) is not None:
          cold[size][label] = format_seconds(getattr(r, field))
    bandwidth = next((r.bandwidth_gbps for r in group if r.bandwidth_gbps), None)
    title = f"{workload} on {backend} ({dtype})"
    what = "median per whole fit" if workload.startswith("fit_") else "median per call"
    roofline = f" (% of {bandwidth:.1f} GB/s copy bandwidth)" if bandwidth else ""
    out.append(f"[ {title}: {what} ±IQR{roofline} ]")
    out.append(_block(steady, engines))
    cold_columns = list(dict.fromkeys(c for cells in cold.values() for c in cells))
    out.append(f"\n[ {title}: first call (cold) and jit stages ]")
    out.append(_block(cold, cold_columns))
    out.append("")
  failures = [r for r in results if r.error is not None]
  out.append("* noisy: IQR/median > 10%.  WRONG: output disagreed with the float64 reference.")
  for r in failures:
    out.append(f"{'WRONG' if r.max_rel_err is not None else 'FAILED'}: {r.workload} "
               f"{shape_label(r.shape)} {r.engine} on {r.backend}: {r.error}")
  return "\n".join(out)


def atomic_write(path: str, text: str) -> None:
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise


def write_json(path: str, machine: dict[str, Any], results: Sequence[Result]) -> None:
  """Writes `{"machine": ..., "results": [...]}` atomically."""
  document = {"machine": machine, "results": [r.to_dict() for r in results]}
  atomic_write(path, json.dumps(document, indent=2) + "\n")


def write_csv(path: str, results: Sequence[Result]) -> None:
  """Writes one CSV row per result (shape as 'NxD') atomically."""
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=FIELDS)
  writer.writeheader()
  for r in results:
    writer.writerow({**r.to_dict(), "shape": shape_label(r.shape)})
  atomic_write(path, buffer.getvalue())


class JsonlWriter:
  """Appends one JSON line per result and flushes it to disk at once."""

  def __init__(self, path: str):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

  def write(self, result: Result) -> None:
    self._file.write(json.dumps(result.to_dict()) + "\n")
    self._file.flush()
    os.fsync(self._file.fileno())

  def close(self) -> None:
    self._file.close()


def _pyplot() -> Any:
  try:
    import matplotlib  # noqa: PLC0415 - optional extra

    matplotlib.use("Agg")
    from matplotlib import pyplot  # noqa: PLC0415
  except ImportError:
    raise ValueError("--plot needs matplotlib: pip install 'funcgrad[plot]'.") from None
  return pyplot


def check_plot_available() -> None:
  """Raises ValueError (naming the extra to install) when matplotlib is missing."""
  _pyplot()


def plot(path: str, results: Sequence[Result]) -> None:
  """Median time vs elements, log-log, one line per engine, one panel per (backend, workload),
  plus a panel of jit compile and first-call times. Needs the `plot` extra (matplotlib)."""
  plt = _pyplot()
  groups = _grouped([r for r in results if r.median_s is not None])
  panels = len(groups) + 1
  fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
  for ax, ((workload, backend, dtype), group) in zip(axes[0], groups.items(), strict=False):
    for engine in dict.fromkeys(r.engine for r in group):
      rows = sorted((r for r in group if r.engine == engine), key=lambda r: r.n_elements)
      ax.errorbar([r.n_elements for r in rows], [r.median_s for r in rows],
                  yerr=[r.iqr_s / 2 for r in rows], marker="o", label=engine, capsize=2)
    ax.set(xscale="log", yscale="log", xlabel="elements", ylabel="median s per call",
           title=f"{workload} on {backend} ({dtype})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
  ax = axes[0][-1]
  jit_rows = [r for r in results if r.engine == "jit" and r.compile_s is not None]
  for workload, backend in dict.fromkeys((r.workload, r.backend) for r in jit_rows):
    rows = sorted((r for r in jit_rows if (r.workload, r.backend) == (workload, backend)),
                  key=lambda r: r.n_elements)
    for field, label, marker in (("compile_s", "compile", "o-"), ("first_call_s", "first call",
                                                                   "s--")):
      ax.plot([r.n_elements for r in rows], [getattr(r, field) for r in rows], marker,
              label=f"jit {label}: {workload} on {backend}")
  ax.set(xscale="log", yscale="log", xlabel="elements", ylabel="seconds",
         title="compile and first call (cold)")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize="small")
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
