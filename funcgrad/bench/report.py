"""Results as data first (JSON, CSV, JSONL), text second (a Compare-style table), and a plot.

JSON and CSV are written atomically (a temporary file in the same folder, then `os.replace`), so
a reader never sees half a file; JSON is strict (NaN and infinities as null, the row saying why).
JSONL is appended and synced row by row, so a sweep killed midway keeps every finished row.
`run_outputs` bundles a script's outputs so that Ctrl-C, SIGTERM and SIGHUP write them too.
"""

import csv
import dataclasses
import io
import math
from collections.abc import Callable, Sequence
from typing import Any

from funcgrad import allocator, outputs, thread_pools
from funcgrad._tables import render_text
from funcgrad.bench import interference
from funcgrad.bench.fitting import FitRow
from funcgrad.bench.runner import NOT_IMPLEMENTED, OK, WRONG, Result
from funcgrad.bench.speedups import Speedup
from funcgrad.errors import UsageError
from funcgrad.shapes import format_shape

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


shape_label = format_shape


def status_label(result: Result) -> str:
  """'WRONG', 'FAILED' or 'n/a' (not implemented) for a row that has no time."""
  return {WRONG: "WRONG", NOT_IMPLEMENTED: "n/a"}.get(result.status, "FAILED")


def shown_share(result: Result) -> float | None:
  """The percentage of its roofline a row's cell shows: of the matmul peak for a compute-bound
  row, of the copy bandwidth for a memory-bound one (from 1%), else None."""
  if result.status != OK or result.median_s is None:
    return None
  if result.bound == "compute":
    return result.pct_of_peak_flops
  share = result.pct_of_bandwidth
  return share if share is not None and share >= 1 else None


def above_peak(result: Result) -> bool:
  """Whether a row's share exceeds 100%: its peak was measured while something else ran."""
  share = shown_share(result)
  return share is not None and share > 100


def _cell(result: Result | None) -> str:
  if result is None:
    return ""
  if result.status != OK or result.median_s is None:
    return status_label(result)
  unit = _unit_for(result.median_s)
  iqr = format_seconds(result.iqr_s, unit).split()[0]
  cell = f"{format_seconds(result.median_s, unit)} ±{iqr}"
  share = shown_share(result)
  if share is not None:
    cell += f" ({share:.0f}%{' !' if share > 100 else ''})"
  elif result.bound != "compute" and result.cache_resident and result.pct_of_bandwidth is None \
      and result.bytes:
    cell += " (c)"
  return cell + (" *" if result.noisy else "")


def _roofline_caption(group: Sequence[Result]) -> str:
  """What a block's percentages are of: only the rooflines one of its cells is compared with."""
  shown = [r for r in group if shown_share(r) is not None]
  parts = []
  peak = next((r.peak_gflops for r in shown if r.bound == "compute" and r.peak_gflops), None)
  if peak:
    parts.append(f"% of the {peak:.0f} GFLOP/s float32 matmul peak")
  bandwidth = next((r.bandwidth_gbps for r in shown if r.bound != "compute" and r.bandwidth_gbps),
                   None)
  if bandwidth:
    parts.append(f"% of {bandwidth:.1f} GB/s all-core copy bandwidth")
  return f" ({'; '.join(parts)})" if parts else ""


def _grouped(results: Sequence[Result]) -> dict[tuple[str, str, str], list[Result]]:
  groups: dict[tuple[str, str, str], list[Result]] = {}
  for r in results:
    groups.setdefault((r.workload, r.backend, r.dtype), []).append(r)
  return groups


def _block(rows: dict[str, dict[str, Any]], columns: list[str]) -> str:
  return render_text(["size", *columns],
                     [[size, *(cells.get(c, "") for c in columns)] for size, cells in rows.items()])


def process_label() -> str:
  """What every caption says about the process: its allocator, and passive thread pools if so."""
  passive = ", passive thread pools" if thread_pools.in_use() == "passive" else ""
  return f"{allocator.in_use()} allocator{passive}"


def render_compare(results: Sequence[Result], memory: str | None = None) -> str:
  """torch.utils.benchmark.Compare-style text: per workload and backend, a block of steady-state
  times (rows: size, columns: engine), then a block of first-call and jit stage times."""
  memory = memory or process_label()  # named in every caption
  out = []
  for (workload, backend, dtype), group in _grouped(results).items():
    # An engine that implements none of this workload's sizes gets no column (the legend says so).
    engines = list(dict.fromkeys(r.engine for r in group if r.status != NOT_IMPLEMENTED))
    steady: dict[str, dict[str, str]] = {}
    cold: dict[str, dict[str, str]] = {}
    for r in group:
      if r.status == NOT_IMPLEMENTED:
        continue
      size = shape_label(r.shape)
      steady.setdefault(size, {})[r.engine] = _cell(r)
      cold.setdefault(size, {})[f"{r.engine} first"] = format_seconds(r.first_call_s)
      for field, label in STAGES:
        if getattr(r, field) is not None:
          cold[size][label] = format_seconds(getattr(r, field))
    devices = max(r.n_devices for r in group)
    title = f"{workload} on {backend}{f' x{devices} devices' if devices > 1 else ''} ({dtype})"
    steps = next((r.steps_per_call for r in group if r.steps_per_call), None)
    what = f"median per call of {steps} steps" if steps else "median per call"
    out.append(f"[ {title}, {memory}{_isolation(group)}: {what} ±IQR{_roofline_caption(group)} ]")
    out.append(_block(steady, engines))
    busy = interference.note([r.to_dict() for r in group], interference.machine_cpus())
    if busy:
      out.append(busy)
    cold_columns = list(dict.fromkeys(c for cells in cold.values() for c in cells))
    out.append(f"\n[ {title}, {memory}: first call (cold) and jit stages ]")
    out.append(_block(cold, cold_columns))
    out.append("")
  out.append(_legend(results))
  for r in results:
    if r.status not in (OK, NOT_IMPLEMENTED):
      out.append(f"{status_label(r)}: {r.workload} {shape_label(r.shape)} {r.engine} on "
                 f"{r.backend}: {r.error}")
  return "\n".join(out)


def _isolation(rows: Sequence[Any]) -> str:
  """`, isolation MODE` for the caption of rows timed under an isolation mode."""
  modes = [m for m in dict.fromkeys(getattr(r, "isolation", None) for r in rows) if m]
  return f", isolation {'/'.join(modes)}" if modes else ""


def _legend(results: Sequence[Result]) -> str:
  parts = ["* noisy: IQR/median > 10%."]
  if any(r.cache_resident and r.bytes and r.bound == "memory" for r in results):
    parts.append("(c): fits in the last-level cache, not compared with DRAM bandwidth.")
  if any(r.status == WRONG for r in results):
    parts.append("WRONG: output disagreed with the float64 reference.")
  if any(r.status == NOT_IMPLEMENTED for r in results):
    parts.append("n/a: the engine does not implement that workload.")
  if any(above_peak(r) for r in results):
    parts.append("!: above 100% of the peak: the peak was measured while something else ran "
                 "(a disturbed peak), so the share means nothing.")
  return "  ".join(parts)


def render_speedups(speedups: Sequence[Speedup], memory: str | None = None) -> str:
  """One block per (workload, backend): `speedup of BASELINE over X`, median [95% interval],
  and the calls after which the baseline's compile is paid back."""
  memory = memory or process_label()  # named in every caption
  groups: dict[tuple[str, str, str], list[Speedup]] = {}
  for s in speedups:
    groups.setdefault((s.workload, s.backend, s.baseline), []).append(s)
  out = []
  for (workload, backend, baseline), group in groups.items():
    engines = list(dict.fromkeys(s.engine for s in group))
    rows: dict[str, dict[str, str]] = {}
    for s in group:
      cell = f"{_ratio(s.ratio)} [{_ratio(s.ci_low)}, {_ratio(s.ci_high)}]"
      cell += f" ({_calls(s.break_even_calls)}/{_calls(s.break_even_calls_warm)} calls)"
      if s.resolved is False:
        cell += " ?"
      rows.setdefault(shape_label(s.shape), {})[s.engine] = cell
    rounds = max(s.rounds for s in group)
    estimator = group[0].estimator
    what = "median" if estimator == "median" else "ratio of the fastest blocks"
    out.append(f"[ {workload} on {backend}, {memory}: speedup of {baseline} over each "
               f"engine, {what} "
               f"[95% interval] over up to {rounds} rounds; (N/W calls) = {baseline} pays back "
               "its first call after N calls against the engine's cold first call, W against it "
               "warm ]")
    out.append(_block(rows, engines))
    if any(s.resolved is False for s in group):
      out.append("? unresolved: the interval is wider than the precision target "
                 "(--max_run_time reached first).")
    out.append("")
  return "\n".join(out)


def break_even_label(speedup: Speedup) -> str:
  """'1 call', '12 calls' or 'never': when the baseline's extra first-call cost is paid back."""
  calls = speedup.break_even_calls
  if calls is None:
    return "never"
  return "1 call" if calls <= 1 else f"{calls} calls"


def _calls(n: int | None) -> str:
  return "never" if n is None else str(n)


def render_fit(rows: Sequence[FitRow], caption: str) -> str:
  """experiments.optimize's table: per loop style, the first call (the whole fit, compiling
  included), the median per step and per fit, where the fit ended, the max relative difference
  from the reference and the fused kernels per step; then one line per row that did not pass."""
  table = []
  for row in rows:
    r = row.result
    if not r.ok:
      table.append([row.loop, format_seconds(r.first_call_s), status_label(r), *["-"] * 6])
      continue
    table.append([row.loop, format_seconds(r.first_call_s),
                  format_seconds(row.per_step_s) + (" *" if r.noisy else ""),
                  format_seconds(r.median_s), f"{row.final_loss:.4g}",
                  f"{row.distance_to_optimum:.2g}", "yes" if row.reached_optimum else "NO",
                  f"{r.max_rel_err:.1g}",
                  "-" if row.fusions_per_step is None else f"{row.fusions_per_step:.3g}"])
  out = [caption, render_text(["loop", "first call", "per step", "total", "final loss",
                               "to optimum", "reached", "vs reference", "fusions/step"], table)]
  if any(row.result.noisy for row in rows):
    out.append("* noisy: the per-step time's IQR/median > 10%.")
  out += [f"{row.loop}: {row.result.error}" for row in rows if row.result.error is not None]
  return "\n".join(out)


def _ratio(value: float) -> str:
  return f"{value:.3g}x"


def json_document(machine: dict[str, Any], results: Sequence[Result],
                  speedups: Sequence[Speedup] = (), **extra: Any) -> dict[str, Any]:
  """`{"machine": ..., "results": [...], "speedups": [...], **extra}`."""
  return {"machine": machine, "results": [r.to_dict() for r in results],
          "speedups": [s.to_dict() for s in speedups], **extra}


def json_text(machine: dict[str, Any], results: Sequence[Result],
              speedups: Sequence[Speedup] = (), **extra: Any) -> str:
  """`json_document(...)` as strict JSON: NaN and infinities are null, and the row holding one
  says which field was what (`"non_finite": {"median_s": "nan"}`)."""
  return outputs.dumps(json_document(machine, results, speedups, **extra)) + "\n"


def write_json(path: str, machine: dict[str, Any], results: Sequence[Result],
               speedups: Sequence[Speedup] = (), **extra: Any) -> None:
  """Writes `json_text(...)` atomically."""
  outputs.atomic_write(path, json_text(machine, results, speedups, **extra))


def csv_text(results: Sequence[Result]) -> str:
  """One CSV row per result (shape as 'NxD', block times space-separated)."""
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=FIELDS)
  writer.writeheader()
  for r in results:
    row = r.to_dict()
    row["shape"] = shape_label(r.shape)
    row["block_times_s"] = " ".join(f"{t:.6g}" for t in r.block_times_s or ())
    writer.writerow(row)
  return buffer.getvalue()


def write_csv(path: str, results: Sequence[Result]) -> None:
  """Writes `csv_text(results)` atomically."""
  outputs.atomic_write(path, csv_text(results))


class JsonlWriter:
  """Appends one strict-JSON line per result, synced at once (`outputs.JsonlFile`: never through
  a symbolic link, never glued to a partial last line, no half row on a full disk)."""

  def __init__(self, path: str, flag: str = "--output_jsonl"):
    self._file = outputs.JsonlFile(path, flag)

  def write(self, result: Result) -> None:
    self._file.write(result.to_dict())

  def close(self) -> None:
    self._file.close()


def run_outputs(machine: Callable[[], dict[str, Any]], *, output_json: str | None = None,
                output_csv: str | None = None, output_jsonl: str | None = None,
                speedups: Callable[[Sequence[Result]], Sequence[Speedup]] = lambda rows: (),
                extra: Callable[[Sequence[Result]], dict[str, Any]] = lambda rows: {},
                plot_path: str | None = None) -> outputs.RunOutputs:
  """A script's `outputs.RunOutputs` for its `--output_json`, `--output_csv`, `--output_jsonl`
  (and `--plot`) flags: JSON `{machine, results, speedups, **extra, complete}`.

  `machine`, `speedups` and `extra` are called when the files are written (at the end, or when
  the run is interrupted) with the rows finished by then.
  """
  def found(rows: Sequence[Result]) -> Sequence[Speedup]:
    try:
      return speedups(rows)
    except Exception:  # noqa: BLE001 - rows of an interrupted run may not pair up: no speedups
      return ()

  def render_json(rows: Sequence[Result], complete: bool) -> str:
    try:
      about = machine()
    except Exception as e:  # noqa: BLE001 - the rows matter more than the machine's description
      about = {"error": f"{type(e).__name__}: {e}"}
    return json_text(about, rows, found(rows), **extra(rows), complete=complete)

  def render_plot(rows: Sequence[Result], complete: bool) -> bytes:
    del complete
    return plot_bytes(rows, found(rows))

  return outputs.RunOutputs(
      {"--output_json": (output_json, render_json),
       "--output_csv": (output_csv, lambda rows, complete: csv_text(rows)),
       "--plot": (plot_path, render_plot)},
      jsonl=("--output_jsonl", output_jsonl))


def _pyplot() -> Any:
  try:
    import matplotlib  # noqa: PLC0415 - optional extra

    matplotlib.use("Agg")
    from matplotlib import pyplot  # noqa: PLC0415
  except ImportError:
    raise UsageError("--plot needs matplotlib: pip install -e '.[plot]'.") from None
  return pyplot


def check_plot_available() -> None:
  """Refuses a plot before any work when matplotlib is missing.

  Raises:
    UsageError: naming the extra to install.
  """
  _pyplot()


def atomic_savefig(fig: Any, path: str) -> None:
  """Saves a matplotlib figure as PNG atomically, with the umask's mode."""
  buffer = io.BytesIO()
  fig.savefig(buffer, dpi=110, format="png")
  outputs.atomic_write(path, buffer.getvalue())


def plot(path: str, results: Sequence[Result], speedups: Sequence[Speedup] = ()) -> None:
  """Writes `plot_bytes(results, speedups)` atomically."""
  outputs.atomic_write(path, plot_bytes(results, speedups))


def plot_bytes(results: Sequence[Result], speedups: Sequence[Speedup] = ()) -> bytes:
  """Median time vs elements, log-log, one line per engine, one panel per (backend, workload),
  a panel of jit compile and first-call times, and a panel of speedups with their 95% intervals,
  as PNG bytes. Needs the `plot` extra (matplotlib)."""
  plt = _pyplot()
  groups = _grouped([r for r in results if r.median_s is not None])
  panels = len(groups) + 1 + bool(speedups)
  fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
  _plot_times(axes[0], groups)
  _plot_compile(axes[0][len(groups)], results)
  if speedups:
    _plot_speedups(axes[0][-1], speedups)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, dpi=110, format="png")
  plt.close(fig)
  return buffer.getvalue()


def _plot_times(axes: Any, groups: dict[tuple[str, str, str], list[Result]]) -> None:
  for ax, ((workload, backend, dtype), group) in zip(axes, groups.items(), strict=False):
    for engine in dict.fromkeys(r.engine for r in group):
      rows = sorted((r for r in group if r.engine == engine), key=lambda r: r.n_elements)
      ax.errorbar([r.n_elements for r in rows], [r.median_s for r in rows],
                  yerr=[(r.iqr_s or 0.0) / 2 for r in rows], marker="o", label=engine, capsize=2)
    ax.set(xscale="log", yscale="log", xlabel="elements", ylabel="median s per call",
           title=f"{workload} on {backend} ({dtype})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")


def _plot_compile(ax: Any, results: Sequence[Result]) -> None:
  jit_rows = [r for r in results if r.engine == "jit" and r.compile_s is not None]
  for workload, backend in dict.fromkeys((r.workload, r.backend) for r in jit_rows):
    rows = sorted((r for r in jit_rows if (r.workload, r.backend) == (workload, backend)),
                  key=lambda r: r.n_elements)
    for field, label, marker in (("compile_s", "compile", "o-"),
                                 ("first_call_s", "first call", "s--")):
      ax.plot([r.n_elements for r in rows], [getattr(r, field) for r in rows], marker,
              label=f"jit {label}: {workload} on {backend}")
  ax.set(xscale="log", yscale="log", xlabel="elements", ylabel="seconds",
         title="compile and first call (cold)")
  ax.grid(True, which="both", alpha=0.3)
  if jit_rows:
    ax.legend(fontsize="small")


def _plot_speedups(ax: Any, speedups: Sequence[Speedup]) -> None:
  for key in dict.fromkeys((s.workload, s.backend, s.engine) for s in speedups):
    rows = sorted((s for s in speedups if (s.workload, s.backend, s.engine) == key),
                  key=lambda s: math.prod(s.shape))
    ax.errorbar([math.prod(s.shape) for s in rows], [s.ratio for s in rows],
                yerr=[[s.ratio - s.ci_low for s in rows], [s.ci_high - s.ratio for s in rows]],
                marker="o", capsize=2, label=f"{rows[0].baseline} over {key[2]}: {key[0]}")
  ax.axhline(1.0, color="black", linewidth=0.8)
  ax.set(xscale="log", yscale="log", xlabel="elements", ylabel="speedup (95% interval)",
         title="speedup of the baseline")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize="x-small")
