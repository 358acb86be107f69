"""Saved baselines and change detection: is this run faster, slower, or the same as the last?

`save` writes the rows with every raw block time and the machine document. `changes` compares a
new run with a loaded baseline per (backend, workload, shape, engine): the ratio new / old of the
estimator (> 1: slower than the baseline), with a 95% bootstrap interval that resamples each
run's blocks on its own (the two runs' rounds are not paired), and a verdict in Criterion.rs's
words: `no change` when the interval contains 1 or the change is below the noise threshold,
else `faster` or `slower`.

A baseline is a file a user names: it is read with a bound (`files.read_regular`), parsed as
JSON, and every field it will use is checked for type and range, so that a missing, truncated,
foreign or hostile file is one line. Timings only compare on the same machine, JAX and
allocator: another one is refused, saying what differs, unless the caller allows it.
"""

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from funcgrad import files
from funcgrad._tables import render_text
from funcgrad.bench.intervals import BOOTSTRAP_RESAMPLES, CONFIDENCE, DEFAULT_ESTIMATOR
from funcgrad.bench.runner import Result
from funcgrad.errors import UsageError
from funcgrad.outputs import atomic_write

FORMAT = "funcgrad-baseline"
VERSION = 1
MAX_BYTES = 64 * 2**20
MAX_ROWS = 100_000
MAX_BLOCKS = 100_000
NOISE_THRESHOLD = 0.05
VERDICTS = ("faster", "slower", "no change")
Key = tuple[str, str, tuple[int, ...], str]


def machine_identity(machine: Mapping[str, Any]) -> dict[str, Any]:
  """What must match for timings to compare: the CPU, JAX and the allocator (and the GPU)."""
  packages = machine.get("packages") or {}
  hardware = machine.get("machine") or {}
  devices = machine.get("devices") or []
  return {"cpu_model": hardware.get("cpu_model"), "cpu_count": hardware.get("cpu_count"),
          "jax": packages.get("jax"), "jaxlib": packages.get("jaxlib"),
          "allocator": machine.get("allocator"),
          "devices": sorted({str(d.get("device_kind")) for d in devices
                             if isinstance(d, Mapping)})}


def document(machine: Mapping[str, Any], results: Sequence[Result]) -> dict[str, Any]:
  """The baseline file's contents."""
  return {"format": FORMAT, "version": VERSION, "machine": dict(machine),
          "rows": [r.to_dict() for r in results if r.block_times_s]}


def save(path: str, machine: Mapping[str, Any], results: Sequence[Result]) -> None:
  """Writes the timed rows (with their raw block times) and the machine document to `path`."""
  atomic_write(path, json.dumps(document(machine, results), indent=1) + "\n")


@dataclasses.dataclass(frozen=True)
class Baseline:
  """A loaded baseline: its machine document and, per key, the per-call block times."""

  path: str
  machine: dict[str, Any]
  blocks: dict[Key, list[float]]


def _bad(path: str, why: str) -> UsageError:
  return UsageError(f"Invalid baseline {path!r} (--compare_to): {why}; expected a file "
                    "written by --save_baseline or Comparison.save.")


def _row_key(path: str, i: int, row: Any) -> tuple[Key, list[float]]:
  if not isinstance(row, dict):
    raise _bad(path, f"row {i} is not an object")
  names = [row.get(k) for k in ("backend", "workload", "engine")]
  shape, blocks = row.get("shape"), row.get("block_times_s")
  if not all(isinstance(n, str) and 0 < len(n) <= 200 for n in names):
    raise _bad(path, f"row {i} lacks backend/workload/engine names")
  if not isinstance(shape, list) or len(shape) > 16 or \
      not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**62 for d in shape):
    raise _bad(path, f"row {i} has no valid shape")
  if not isinstance(blocks, list) or not 0 < len(blocks) <= MAX_BLOCKS or \
      not all(isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t)
              and t > 0 for t in blocks):
    raise _bad(path, f"row {i} has no positive finite block_times_s")
  backend, workload, engine = names
  return (backend, workload, tuple(shape), engine), [float(t) for t in blocks]


def load(path: str) -> Baseline:
  """Reads a baseline written by `save`, at most MAX_BYTES of it.

  Raises:
    UsageError: one line for a missing, special, oversized, truncated, foreign or malformed file.
  """
  data = files.read_regular(path, MAX_BYTES, "Baseline (--compare_to)")
  try:
    doc = json.loads(data.decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
    where = f" at byte {e.pos}" if isinstance(e, json.JSONDecodeError) else ""
    raise _bad(path, f"not complete JSON{where} (truncated or not a baseline)") from None
  if not isinstance(doc, dict) or doc.get("format") != FORMAT:
    raise _bad(path, f"not a funcgrad baseline (no \"format\": \"{FORMAT}\")")
  if doc.get("version") != VERSION:
    raise _bad(path, f"baseline version {doc.get('version')!r}, this funcgrad reads {VERSION}")
  machine, rows = doc.get("machine"), doc.get("rows")
  if not isinstance(machine, dict) or not isinstance(rows, list) or len(rows) > MAX_ROWS:
    raise _bad(path, "no machine object or no list of rows")
  blocks = dict(_row_key(path, i, row) for i, row in enumerate(rows))
  return Baseline(path, machine, blocks)


def check_machine(baseline: Baseline, machine: Mapping[str, Any], allow_other: bool) -> None:
  """Refuses a baseline from another machine, JAX version or allocator, unless allowed.

  Raises:
    UsageError: one line listing what differs (old -> new).
  """
  old, new = machine_identity(baseline.machine), machine_identity(machine)
  differs = [f"{k} {old[k]!r} -> {new[k]!r}" for k in new if old.get(k) != new[k]]
  if differs and not allow_other:
    raise UsageError(f"Baseline {baseline.path!r} was measured elsewhere ({'; '.join(differs)}): "
                     "its times do not compare with this run's. Pass --allow_other_machine "
                     "(allow_other_machine=True) to compare anyway.")


def _estimate(values: np.ndarray, estimator: str) -> np.ndarray:
  return values.min(axis=-1) if estimator == "min" else np.median(values, axis=-1)


def change_interval(new: Sequence[float], old: Sequence[float], estimator: str = DEFAULT_ESTIMATOR,
                    seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES,
                    confidence: float = CONFIDENCE) -> tuple[float, float, float]:
  """(ratio, low, high): estimator(new) / estimator(old), each run's blocks resampled alone."""
  new_a, old_a = np.asarray(new, np.float64), np.asarray(old, np.float64)
  rng = np.random.default_rng(seed)
  new_s = _estimate(rng.choice(new_a, (resamples, new_a.size)), estimator)
  old_s = _estimate(rng.choice(old_a, (resamples, old_a.size)), estimator)
  tail = 100 * (1 - confidence) / 2
  low, high = np.percentile(new_s / old_s, [tail, 100 - tail])
  return float(_estimate(new_a, estimator) / _estimate(old_a, estimator)), float(low), float(high)


def verdict(ratio: float, low: float, high: float, threshold: float = NOISE_THRESHOLD) -> str:
  """`no change` when [low, high] contains 1 or |ratio - 1| < threshold; else faster/slower."""
  if low <= 1.0 <= high or abs(ratio - 1.0) < threshold:
    return "no change"
  return "slower" if ratio > 1.0 else "faster"


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
  """New over old time for one row (ratio > 1: slower than the baseline)."""

  backend: str
  workload: str
  shape: list[int]
  engine: str
  ratio: float
  ci_low: float
  ci_high: float
  verdict: str

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def changes(results: Sequence[Result], baseline: Baseline, threshold: float = NOISE_THRESHOLD,
            estimator: str = DEFAULT_ESTIMATOR, seed: int = 0) -> list[Change]:
  """A `Change` for every timed row that the baseline also has."""
  out = []
  for r in results:
    key = (r.backend, r.workload, tuple(r.shape), r.engine)
    old = baseline.blocks.get(key)
    if not r.block_times_s or old is None:
      continue
    ratio, low, high = change_interval(r.block_times_s, old, estimator, seed)
    out.append(Change(r.backend, r.workload, list(r.shape), r.engine, ratio, low, high,
                      verdict(ratio, low, high, threshold)))
  return out


def check_threshold(threshold: float, prefix: str = "--") -> None:
  """Raises UsageError unless 0 <= threshold < 1."""
  if not 0 <= threshold < 1:
    raise UsageError(f"Invalid {prefix}noise_threshold={threshold!r}: a relative change in "
                     "[0, 1) (e.g. 0.05 for 5%).")


def check_fail_on_regression(fail_on_regression: bool, compare_to: str | None) -> None:
  """Raises UsageError for --fail_on_regression without a baseline to regress from."""
  if fail_on_regression and not compare_to:
    raise UsageError("Invalid --fail_on_regression: it needs --compare_to=PATH (a baseline "
                     "written by --save_baseline) to find a regression against.")


def regressed(found: Sequence[Change]) -> bool:
  return any(c.verdict == "slower" for c in found)


def render(found: Sequence[Change], path: str, threshold: float) -> str:
  """The changes as a text table, with what `no change` means."""
  header = ["backend", "workload", "shape", "engine", "new/old", "95% interval", "verdict"]
  rows = [[c.backend, c.workload, "x".join(map(str, c.shape)) or "-", c.engine,
           f"{c.ratio:.3f}x", f"[{c.ci_low:.3f}, {c.ci_high:.3f}]", c.verdict] for c in found]
  caption = (f"Against baseline {path} (new/old time, > 1: slower; 'no change' when the "
             f"interval holds 1 or the change is under {threshold:.0%}).")
  if not rows:
    return caption + "\nno row of this run is in the baseline."
  return caption + "\n" + render_text(header, rows)
