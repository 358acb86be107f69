"""Strong and weak scaling of the jit engine over device meshes of growing size.

Strong scaling keeps the problem fixed and adds devices (ideal: time / count); weak scaling grows
the rows with the device count (ideal: constant time). Each row goes through the runner, so each
is checked against the float64 reference before it is timed.
"""

from collections.abc import Sequence

import numpy as np

from funcgrad._tables import render_text
from funcgrad.bench import engines, report, runner
from funcgrad.bench.case import Sweep, Timing
from funcgrad.bench.workloads.model import Workload


def scaling_rows(workload: Workload, base: tuple[int, ...], counts: Sequence[int], weak: bool,
                 min_run_time: float, backend: str = "cpu") -> list[runner.Result]:
  """One jit row per device count; with `weak`, the first dimension grows with the count."""
  rows = []
  for count in counts:
    size = (base[0] * count, *base[1:]) if weak else base
    sweep = Sweep([workload], [engines.ENGINES["jit"]], [backend], [size],
                  np.dtype(np.float32), Timing(min_run_time), mesh_shape=(count,))
    rows += runner.run_sweep(sweep.cases(), rooflines={})
  return rows


def render(strong: Sequence[runner.Result], weak: Sequence[runner.Result]) -> str:
  """Two blocks: time, speed-up and efficiency per device count."""
  out = []
  for title, rows, is_weak in (("strong scaling (fixed size)", strong, False),
                               ("weak scaling (size grows with the devices)", weak, True)):
    if not rows:
      continue
    base = rows[0].median_s
    table = []
    for r in rows:
      if r.median_s is None:
        table.append([str(r.n_devices), report.shape_label(r.shape), "FAILED", "-", "-"])
        continue
      speedup = base / r.median_s * (r.n_devices if is_weak else 1)
      table.append([str(r.n_devices), report.shape_label(r.shape),
                    f"{report.format_seconds(r.median_s)} ±{report.format_seconds(r.iqr_s)}",
                    f"{speedup:.2f}x", f"{100 * speedup / r.n_devices:.0f}%"])
    out.append(f"[ {rows[0].workload} jit, {title}, {report.process_label()} ]")
    gain = "scaled speed-up" if is_weak else "speed-up"  # weak: N x T1 / TN (Gustafson)
    out.append(render_text(["devices", "size", "median", gain, "efficiency"], table))
    out.append("")
  return "\n".join(out)
