"""funcgrad.compare with a precision target, isolation, saved baselines and change detection."""

import json

import jax.numpy as jnp
import pytest

import funcgrad
from funcgrad.bench import baselines, report
from funcgrad.errors import UsageError
from tests.cli import run_in_process
from tests.helpers import assert_one_line_error


def tanh_loss(w, x):
  return jnp.sum(jnp.tanh(x @ w) ** 2)


W, X = jnp.ones((16, 4)) * 0.1, jnp.ones((8, 16))


def test_rows_carry_interference_isolation_and_why_rounds_stopped():
  c = funcgrad.compare(tanh_loss, W, X, min_run_time=0.02, precision=0.5, max_run_time=1.0)
  for row in c.results:
    assert set(row.interference) == {"other_processes", "other_engines", "steal"}
    assert all(v is None or 0 <= v <= 1 for v in row.interference.values())
    assert row.isolation == "cooldown" and row.stopped in ("precision", "max_run_time")
  (s,) = c.speedups
  assert s.resolved is (s.half_width <= 0.5) and s.estimator == "median"
  assert c.machine["isolation"] == "cooldown"
  assert set(c.machine["interference"]) == {"other_processes", "other_engines", "steal", "cpus",
                                            "isolation"}
  assert "isolation cooldown" in c.table()


def test_isolation_none_and_min_estimator():
  c = funcgrad.compare(tanh_loss, W, X, min_run_time=0.02, isolation="none", estimator="min")
  assert {r.isolation for r in c.results} == {"none"}
  assert c.speedups[0].estimator == "min" and c.speedups[0].resolved is None
  assert "ratio of the fastest blocks" in c.table()


@pytest.mark.slow  # quick subset (-m "not slow") within 90 s: three sweeps
def test_save_then_compare_to_gives_changes_in_text_and_json(tmp_path):
  first = funcgrad.compare(tanh_loss, W, X, min_run_time=0.02)
  path = str(tmp_path / "base.json")
  first.save(path)
  saved = json.loads((tmp_path / "base.json").read_text())
  assert saved["format"] == baselines.FORMAT and len(saved["rows"]) == 2
  assert all(row["block_times_s"] for row in saved["rows"])
  again = funcgrad.compare(tanh_loss, W, X, min_run_time=0.02, compare_to=path)
  assert [c.engine for c in again.changes] == ["eager", "jit"]
  assert all(c.verdict in baselines.VERDICTS and c.ci_low <= c.ratio <= c.ci_high
             for c in again.changes)
  assert "Against baseline" in again.table()
  out = tmp_path / "c.json"
  again.to_json(str(out))
  (change, _) = json.loads(out.read_text())["changes"]
  assert set(change) == {"backend", "workload", "shape", "engine", "ratio", "ci_low", "ci_high",
                         "verdict"}
  saved["machine"]["packages"]["jax"] = "0.0.1"  # as if saved under another JAX
  (tmp_path / "base.json").write_text(json.dumps(saved))
  with pytest.raises(UsageError, match=r"measured elsewhere \(jax '0.0.1' -> "):
    funcgrad.compare(tanh_loss, W, X, min_run_time=1e3, compare_to=path)  # refused at once


@pytest.mark.parametrize("kwargs, match", [
    ({"precision": 1.5}, "^Invalid precision=1.5"), ({"precision": float("nan")}, "precision=nan"),
    ({"precision": 0.1, "max_run_time": 0.001}, "max_run_time=0.001: it must be at least "
                                                "min_run_time=0.01"),
    ({"estimator": "mean"}, "^Invalid estimator='mean'"),
    ({"isolation": "process"}, "^Invalid isolation='process'"),
    ({"noise_threshold": -1.0}, "^Invalid noise_threshold=-1.0"),
    ({"compare_to": "/nonexistent/b.json"}, "Cannot read baseline")])
def test_bad_arguments_are_one_line_before_anything_is_timed(kwargs, match):
  with pytest.raises(UsageError, match=match) as e:
    funcgrad.compare(tanh_loss, W, X, min_run_time=0.01, **kwargs)
  assert "\n" not in str(e.value)


def test_unresolved_speedups_are_marked_in_the_text():
  c = funcgrad.compare(tanh_loss, W, X, min_run_time=0.01, precision=1e-4, max_run_time=0.05)
  (s,) = c.speedups
  assert s.resolved is False and c.results[0].stopped == "max_run_time"
  text = report.render_speedups(c.speedups)
  assert " ?" in text and "? unresolved" in text


@pytest.mark.parametrize("script, args, fragments", [
    ("experiments.compare", ["--precision=0"], ["--precision=0.0"]),
    ("experiments.compare", ["--precision=nan"], ["--precision=nan"]),
    ("experiments.compare", ["--precision=0.1", "--max_run_time=0.1"],
     ["--max_run_time=0.1", "--min_run_time=0.2"]),
    ("experiments.compare", ["--estimator=mean"], ["--estimator='mean'", "median, min"]),
    ("experiments.compare", ["--isolation=process"], ["--isolation='process'"]),
    ("experiments.compare", ["--fail_on_regression"], ["--fail_on_regression", "--compare_to"]),
    ("experiments.compare", ["--compare_to=/nonexistent.json"], ["--compare_to", "No such file"]),
    ("experiments.compare", ["--noise_threshold=1"], ["--noise_threshold=1.0"]),
    ("experiments.crossover", ["--precision=2"], ["--precision=2.0"]),
    ("experiments.benchmark", ["--estimator=max"], ["--estimator='max'"]),
])
def test_cli_bad_precision_estimator_isolation_and_baseline_flags(script, args, fragments):
  assert_one_line_error(run_in_process(script, *args), *fragments)


@pytest.mark.parametrize("contents", ['{"format": "funcgrad-baseline", "ver', '{"rows": []}',
                                      "\x00\x01binary"])
def test_cli_truncated_foreign_or_hostile_baseline_is_one_line(tmp_path, contents):
  path = tmp_path / "base.json"
  path.write_text(contents)
  assert_one_line_error(run_in_process("experiments.compare", f"--compare_to={path}"),
                        "--compare_to", str(path))


def test_cli_save_baseline_then_fail_on_regression(tmp_path):
  base, out = tmp_path / "base.json", tmp_path / "c.json"
  args = ["--engines=numpy,jit", "--workloads=abs_loss", "--sizes=12", "--min_run_time=0.01",
          "--noprogress"]
  first = run_in_process("experiments.compare", *args, f"--save_baseline={base}")
  assert first.returncode == 0, first.stderr
  rows = json.loads(base.read_text())["rows"]
  assert {r["engine"] for r in rows} == {"numpy", "jit"}
  # Every row of the baseline made 100x faster: this run is surely slower.
  document = json.loads(base.read_text())
  for row in document["rows"]:
    row["block_times_s"] = [t / 100 for t in row["block_times_s"]]
  base.write_text(json.dumps(document))
  again = run_in_process("experiments.compare", *args, f"--compare_to={base}",
                         "--fail_on_regression", f"--output_json={out}")
  assert again.returncode == 1 and "a row is slower than the baseline" in again.stderr
  assert "Against baseline" in again.stdout and "slower" in again.stdout
  changes = json.loads(out.read_text())["changes"]
  assert {c["verdict"] for c in changes} == {"slower"} and all(c["ratio"] > 5 for c in changes)
  assert json.loads(out.read_text())["machine"]["isolation"] == "cooldown"


def test_cli_unwritable_save_baseline_is_refused_before_timing(tmp_path):
  (tmp_path / "file").write_text("")
  outcome = run_in_process("experiments.compare", "--engines=numpy,jit", "--sizes=3x4",
                           f"--save_baseline={tmp_path}/file/b.json")
  assert_one_line_error(outcome, "--save_baseline")
  assert outcome.seconds < 30


def test_flags_module_stays_light_and_agrees_with_the_case():
  from funcgrad.bench import case
  from funcgrad.experiments import _flags

  assert _flags.DEFAULT_MAX_RUN_TIME_FACTOR == case.DEFAULT_MAX_RUN_TIME_FACTOR
