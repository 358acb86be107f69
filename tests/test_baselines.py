"""Saved baselines: round trip, verdicts at the threshold edges, refusals, hostile files."""

import json

import numpy as np
import pytest

from funcgrad.bench import baselines
from funcgrad.bench.runner import Result
from funcgrad.errors import UsageError

MACHINE = {"packages": {"jax": "0.10.2", "jaxlib": "0.10.2"}, "allocator": "mimalloc",
           "machine": {"cpu_model": "Xeon", "cpu_count": 2},
           "devices": [{"device_kind": "cpu"}]}


def _row(engine, blocks, workload="w", shape=(3, 4)):
  return Result(workload=workload, engine=engine, backend="cpu", shape=list(shape),
                dtype="float32", n_elements=12, status="ok", ok=True, block_times_s=list(blocks))


def _saved(tmp_path, rows, machine=MACHINE):
  path = str(tmp_path / "base.json")
  baselines.save(path, machine, rows)
  return baselines.load(path)


def test_round_trip_keeps_raw_blocks_and_machine(tmp_path):
  rows = [_row("jit", [1e-3, 1.1e-3]), _row("eager", [3e-3]), _row("numpy", [])]
  base = _saved(tmp_path, rows)
  assert base.machine == MACHINE
  assert base.blocks == {("cpu", "w", (3, 4), "jit"): [1e-3, 1.1e-3],
                         ("cpu", "w", (3, 4), "eager"): [3e-3]}  # untimed rows are left out


@pytest.mark.parametrize("ratio, low, high, threshold, expected", [
    (1.2, 1.1, 1.3, 0.05, "slower"), (0.8, 0.7, 0.9, 0.05, "faster"),
    (1.2, 0.99, 1.3, 0.05, "no change"),  # the interval holds 1
    (1.0, 1.0, 1.0, 0.0, "no change"),  # holds 1 exactly
    (1.0499, 1.04, 1.06, 0.05, "no change"),  # just under the threshold
    (1.05, 1.04, 1.06, 0.05, "slower"),  # at the threshold: a change
    (0.95, 0.94, 0.96, 0.05, "faster")])
def test_verdicts_at_the_edges(ratio, low, high, threshold, expected):
  assert baselines.verdict(ratio, low, high, threshold) == expected


def test_changes_against_itself_and_twice_the_work(tmp_path):
  rng = np.random.default_rng(0)
  blocks = list(1e-3 * (1 + np.abs(rng.normal(0, 0.05, 30))))
  base = _saved(tmp_path, [_row("jit", blocks)])
  again = list(1e-3 * (1 + np.abs(rng.normal(0, 0.05, 30))))
  (same,) = baselines.changes([_row("jit", again)], base)
  assert same.verdict == "no change" and same.ci_low <= 1 <= same.ci_high
  (double,) = baselines.changes([_row("jit", [2 * t for t in again])], base)
  assert double.verdict == "slower" and double.ci_low <= 2.0 * 1.1 and double.ci_high >= 2.0 / 1.1
  assert double.ratio == pytest.approx(2.0, rel=0.1)
  assert baselines.regressed([same, double]) and not baselines.regressed([same])
  assert baselines.changes([_row("jit", again, shape=(9,))], base) == []  # not in the baseline
  text = baselines.render([same, double], "base.json", 0.05)
  assert "slower" in text and "no change" in text and "new/old" in text


def test_min_estimator_change(tmp_path):
  base = _saved(tmp_path, [_row("jit", [1.0, 1.5, 1.2])])
  (c,) = baselines.changes([_row("jit", [2.0, 2.2, 5.0])], base, estimator="min")
  assert c.ratio == 2.0


def test_another_machine_is_refused_naming_what_differs(tmp_path):
  base = _saved(tmp_path, [_row("jit", [1.0])])
  baselines.check_machine(base, MACHINE, allow_other=False)
  other = {**MACHINE, "packages": {"jax": "0.11.2", "jaxlib": "0.11.2"}, "allocator": "system"}
  with pytest.raises(UsageError, match=r"measured elsewhere \(jax '0.10.2' -> '0.11.2'; jaxlib "
                                       r"'0.10.2' -> '0.11.2'; allocator 'mimalloc' -> 'system'\)"):
    baselines.check_machine(base, other, allow_other=False)
  baselines.check_machine(base, other, allow_other=True)
  cpu = {**MACHINE, "machine": {"cpu_model": "EPYC", "cpu_count": 2}}
  with pytest.raises(UsageError, match="cpu_model 'Xeon' -> 'EPYC'.*--allow_other_machine"):
    baselines.check_machine(base, cpu, allow_other=False)


def _write(tmp_path, text):
  path = tmp_path / "bad.json"
  path.write_bytes(text if isinstance(text, bytes) else text.encode())
  return str(path)


GOOD = {"format": baselines.FORMAT, "version": 1, "machine": MACHINE,
        "rows": [{"backend": "cpu", "workload": "w", "engine": "jit", "shape": [3],
                  "block_times_s": [1.0]}]}


@pytest.mark.parametrize("contents, match", [
    (json.dumps(GOOD)[:40], "not complete JSON at byte"),
    (b"\xff\xfe junk", "not complete JSON"),
    ("[" * 100_000, "not complete JSON"),
    (json.dumps({"machine": {}, "results": []}), "not a funcgrad baseline"),
    (json.dumps([1, 2]), "not a funcgrad baseline"),
    (json.dumps({**GOOD, "version": 99}), "baseline version 99"),
    (json.dumps({**GOOD, "rows": "x"}), "no machine object or no list of rows"),
    (json.dumps({**GOOD, "rows": [5]}), "row 0 is not an object"),
    (json.dumps({**GOOD, "rows": [{**GOOD["rows"][0], "engine": None}]}), "row 0 lacks"),
    (json.dumps({**GOOD, "rows": [{**GOOD["rows"][0], "shape": [-1]}]}), "no valid shape"),
    (json.dumps({**GOOD, "rows": [{**GOOD["rows"][0], "block_times_s": [0.0]}]}),
     "no positive finite block_times_s"),
    (json.dumps({**GOOD, "rows": [{**GOOD["rows"][0], "block_times_s": [1e400]}]}),
     "no positive finite"),
    (json.dumps({**GOOD, "rows": [{**GOOD["rows"][0], "block_times_s": [True]}]}),
     "no positive finite")])
def test_truncated_foreign_and_hostile_files_are_one_line(tmp_path, contents, match):
  with pytest.raises(UsageError, match=match) as e:
    baselines.load(_write(tmp_path, contents))
  assert "\n" not in str(e.value) and len(str(e.value)) < 300


def test_missing_special_and_oversized_files_are_one_line(tmp_path, monkeypatch):
  with pytest.raises(UsageError, match=r"Cannot read baseline \(--compare_to\) .*No such file"):
    baselines.load(str(tmp_path / "missing.json"))
  with pytest.raises(UsageError, match="a directory"):
    baselines.load(str(tmp_path))
  monkeypatch.setattr(baselines, "MAX_BYTES", 10)
  with pytest.raises(UsageError, match="more than the 10 accepted"):
    baselines.load(_write(tmp_path, json.dumps(GOOD)))


def test_bad_flags_are_one_line():
  with pytest.raises(UsageError, match="--fail_on_regression: it needs --compare_to"):
    baselines.check_fail_on_regression(True, None)
  baselines.check_fail_on_regression(True, "b.json")
  baselines.check_fail_on_regression(False, None)
  with pytest.raises(UsageError, match="--noise_threshold=1.5"):
    baselines.check_threshold(1.5)
  with pytest.raises(UsageError, match="--noise_threshold=nan"):
    baselines.check_threshold(float("nan"))
