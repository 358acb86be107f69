"""`python -m experiments.compare` through its CLI: one real-process smoke run, a kill and a shell
script in subprocesses; everything else through the same parse and main in-process (`tests.cli`)."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from funcgrad.bench.engines import ENGINES
from funcgrad.peers import peer_available
from tests.cli import run_in_process
from tests.helpers import ROOT, assert_one_line_error

QUICK = ["--min_run_time=0.01", "--sizes=3x4"]
ROW_LINE = re.compile(r"^\[\d+/\d+\] ")  # a progress line: "[1/2] cpu muladd_sum 3x4 tf_eager: ..."
NATIVE_LOG_LINE = re.compile(r"^[IWE]\d{4} .*\.cc:\d+\]", re.MULTILINE)  # TensorFlow's, XLA's


@pytest.mark.slow
def test_quick_run_writes_every_output(tmp_path):
  """Every output, and progress lines off a terminal. In-process: the CLI's real processes are
  the GPU check's smoke run below and the signal tests (tests/test_hostile_outputs.py)."""
  out = {ext: tmp_path / f"r.{ext}" for ext in ("json", "csv", "jsonl", "png")}
  result = run_in_process("experiments.compare", *QUICK, "--engines=numpy,eager,jit",
                          f"--output_json={out['json']}", f"--output_csv={out['csv']}",
                          f"--output_jsonl={out['jsonl']}", f"--plot={out['png']}")
  assert result.returncode == 0, result.stderr
  doc = json.loads(out["json"].read_text())
  assert doc["machine"]["packages"]["jax"] and doc["machine"]["devices"]
  rows = doc["results"]
  assert [(r["workload"], r["engine"]) for r in rows] == [
      (w, e) for w in ("muladd_sum", "abs_loss") for e in ("numpy", "eager", "jit")]
  assert all(r["ok"] and r["median_s"] > 0 and r["error"] is None for r in rows)
  with out["csv"].open() as f:
    assert len(list(csv.DictReader(f))) == 6
  assert len(out["jsonl"].read_text().splitlines()) == 6
  assert out["png"].read_bytes().startswith(b"\x89PNG")
  assert "[ muladd_sum on cpu (float32), " in result.stdout and "median per call" in result.stdout
  assert "[6/6] cpu abs_loss 12 jit:" in result.stderr  # progress lines with what remains


@pytest.mark.peers
@pytest.mark.slow
def test_every_engine_in_table_json_and_csv(tmp_path):
  missing = [e.name for e in ENGINES.values() if not e.available()]
  if missing and not os.environ.get("FUNCGRAD_REQUIRE_PEERS"):
    pytest.skip(f"peers not installed: {missing}")
  json_path, csv_path = tmp_path / "r.json", tmp_path / "r.csv"
  # In-process: the peers are imported once per test session, not once more in a subprocess.
  result = run_in_process("experiments.compare", *QUICK, "--workloads=muladd_sum", "--engines=all",
                          f"--output_json={json_path}", f"--output_csv={csv_path}")
  assert result.returncode == 0, result.stderr[-3000:]
  rows = json.loads(json_path.read_text())["results"]
  # jit_scan(_fused) loop over a training workload's steps: they do not run muladd_sum, so
  # `all` leaves them out silently (no row, no n/a line; --help says which engines run what).
  scans = ("jit_scan", "jit_scan_fused")
  timed = [e for e in ENGINES if e not in scans]
  assert [r["engine"] for r in rows] == timed
  failed = [(r["engine"], r["error"]) for r in rows if not r["ok"]]
  assert failed == []
  assert "n/a" not in result.stdout + result.stderr
  header = next(line for line in result.stdout.splitlines() if line.startswith("size"))
  assert header.split()[1:] == timed
  assert {s["engine"] for s in json.loads(json_path.read_text())["speedups"]} == \
      set(timed) - {"jit"}
  with csv_path.open() as f:
    assert [r["engine"] for r in csv.DictReader(f)] == timed


def test_wrong_rows_exit_nonzero_after_writing(tmp_path):
  # float16 cannot hold this sum (it overflows past 65504): every engine is rightly WRONG.
  path = tmp_path / "r.json"
  result = run_in_process("experiments.compare", "--min_run_time=0.01", "--workloads=abs_loss",
                          "--sizes=100000", "--dtype=float16", "--engines=numpy,jit",
                          f"--output_json={path}")
  assert result.returncode == 1
  rows = json.loads(path.read_text())["results"]
  assert [r["ok"] for r in rows] == [False, False]
  assert all("differs from the numpy float64 reference" in r["error"] for r in rows)
  assert "WRONG: abs_loss 100000 numpy on cpu" in result.stdout
  assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_interrupted_sweep_keeps_finished_rows(tmp_path):
  path = tmp_path / "r.jsonl"
  sizes = ",".join(f"{n}x{n}" for n in range(2, 40))
  proc = subprocess.Popen(
      [sys.executable, "-m", "experiments.compare", "--engines=numpy,jit", "--workloads=muladd_sum",
       f"--sizes={sizes}", "--min_run_time=0.05", f"--output_jsonl={path}"],
      cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
      if path.exists() and len(path.read_text().splitlines()) >= 3:
        break
      time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
  finally:
    proc.wait(timeout=30)
  lines = path.read_text().splitlines()
  assert 3 <= len(lines) < 76  # killed midway
  rows = [json.loads(line) for line in lines]  # every finished row is whole, valid JSON
  assert all(r["ok"] and r["median_s"] > 0 for r in rows)
  assert [r["shape"] for r in rows[:2]] == [[2, 2], [2, 2]]


@pytest.mark.parametrize("args, fragments", [
    (["--sizes=3x"], ["'3x'", "NxD"]),
    (["--sizes=0x4"], ["'0x4'", "positive integers"]),
    (["--sizes=-1x2"], ["'-1x2'", "positive integers"]),
    (["--sizes=3x4x5"], ["'3x4x5'"]),
    (["--engines=bogus"], ["'bogus'", "numpy, eager, jit"]),
    (["--workloads=bogus"], ["'bogus'", "muladd_sum, abs_loss"]),
    (["--backends=tpu"], ["'tpu'", "not present", "present: cpu"]),
    (["--backends=xpu"], ["'xpu'", "cpu, gpu, tpu"]),
    (["--dtype=float128"], ["'float128'", "Valid names"]),
    (["--dtype=int32"], ["int32", "not a float dtype"]),
    (["--min_run_time=-1"], ["--min_run_time=-1"]),
    (["--min_run_time=nan"], ["--min_run_time=nan", "(0, 3600]"]),
    (["--min_run_time=inf"], ["--min_run_time=inf", "(0, 3600]"]),
    (["--engines=numpy,eager", "--baseline=jit"], ["--baseline='jit'", "not in --engines"]),
    (["--interleave=maybe"], ["interleave", "maybe"]),
    (["--function=nosuchmodule:f", "--shapes=3"], ["nosuchmodule", "cannot import"]),
    (["--function=tests.fixtures.user_functions:missing", "--shapes=3"], ["has no attribute"]),
    (["--function=tests.fixtures.user_functions:NOT_CALLABLE", "--shapes=3"],
     ["NOT_CALLABLE", "not callable"]),
    (["--function=tests.fixtures.user_functions:vector_output", "--shapes=3"],
     ["vector_output", "not a scalar"]),
    (["--function=tests.fixtures.user_functions:raises_when_traced", "--shapes=3"],
     ["raises_when_traced", "fails to trace"]),
    (["--function=tests.fixtures.user_functions:mlp_loss"], ["needs --shapes"]),
    (["--function=tests.fixtures.user_functions:mlp_loss", "--shapes=3", "--sizes=3x4"],
     ["--sizes does not combine with --function"]),
    (["--function=noseparator", "--shapes=3"], ["MODULE:NAME"]),
    (["--sizes=1000000x1000000"], ["1000000x1000000", "GiB", "refused before allocating"]),
])
def test_bad_input_is_one_clear_line(args, fragments, tmp_path):
  jsonl = tmp_path / "r.jsonl"
  result = run_in_process("experiments.compare", *args, f"--output_jsonl={jsonl}")
  assert_one_line_error(result, *fragments)
  assert not jsonl.exists()  # refused before measuring anything


@pytest.mark.skipif("gpu" in __import__("funcgrad").platforms_present(), reason="GPU present")
def test_absent_gpu_skipped_on_request():
  result = run_in_process("experiments.compare", *QUICK, "--engines=numpy",
                          "--workloads=abs_loss", "--backends=cpu,gpu", "--skip_unavailable")
  assert result.returncode == 0, result.stderr
  assert "abs_loss on cpu" in result.stdout and " on gpu" not in result.stdout
  assert_one_line_error(run_in_process("experiments.compare", "--backends=cpu,gpu"),
                        "'gpu'", "--skip_unavailable")


@pytest.mark.slow
def test_gpu_check_script_smoke_on_cpu(tmp_path):
  """scripts/gpu_check.sh end to end, pointed at the CPU so it runs anywhere."""
  # BENCHMARK_TARGETS=adam: no peers. The small target (torch.compile and TensorFlow) runs in
  # test_docs, in the documented every-group benchmark command. SCAN_ENGINES empty: the scan
  # loops on the models (5 of this test's CPU-seconds) run in tests/test_model_workloads.py.
  env = {**os.environ, "BACKENDS": "cpu", "SIZES": "3x4", "ENGINES": "numpy,jit",
         "MODEL_SIZES": "16x32", "ATTENTION_SIZES": "16x128", "MAX_ELEMENTS": "100",
         "SCAN_ENGINES": "", "BENCHMARK_TARGETS": "adam", "MIN_RUN_TIME": "0.01",
         "OUT": str(tmp_path), "PYTHON": sys.executable}
  result = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  names = sorted(p.name for p in tmp_path.iterdir())
  assert names == ["benchmark.json", "crossover.json", "env.json", "gpu_compare.json",
                   "gpu_compare.png", "gpu_models.json", "logs.tar.gz", "summary.txt"]
  rows = json.loads((tmp_path / "gpu_compare.json").read_text())["results"]
  assert {r["engine"] for r in rows} == {"numpy", "jit"} and all(r["ok"] for r in rows)
  models = json.loads((tmp_path / "gpu_models.json").read_text())["results"]
  assert {r["workload"] for r in models} == {"mlp", "mlp_train", "attention"}
  assert {r["engine"] for r in models} == {"numpy", "jit"} and all(r["ok"] for r in models)
  assert json.loads((tmp_path / "crossover.json").read_text())["crossovers"]
  assert json.loads((tmp_path / "benchmark.json").read_text())["targets"]
  assert json.loads((tmp_path / "env.json").read_text())["default_backend"]


def test_your_own_function_through_the_cli(tmp_path):
  path = tmp_path / "f.json"
  result = run_in_process("experiments.compare",
                          "--function=tests.fixtures.user_functions:mlp_loss",
                          "--shapes=64x8;32x64", "--argnums=0,1", "--min_run_time=0.02",
                          f"--output_json={path}")
  assert result.returncode == 0, result.stderr[-2000:]
  document = json.loads(path.read_text())
  rows = document["results"]
  assert [r["engine"] for r in rows] == ["eager", "jit", "jit_packed"]
  assert all(r["ok"] and r["workload"] == "tests.fixtures.user_functions:mlp_loss" for r in rows)
  assert all(r["reference"].startswith("jax float64 re-run") for r in rows)
  assert {(s["engine"], s["baseline"]) for s in document["speedups"]} == {
      ("eager", "jit"), ("jit_packed", "jit")}
  assert "speedup of jit over each engine" in result.stdout


@pytest.mark.peers
@pytest.mark.slow
def test_quiet_by_default_and_verbosity_brings_the_native_logs_back():
  if not peer_available("tensorflow") and not os.environ.get("FUNCGRAD_REQUIRE_PEERS"):
    pytest.skip("tensorflow not installed")
  command = [sys.executable, "-m", "experiments.compare", "--engines=tf_eager,jit", "--sizes=3x4",
             "--min_run_time=0.01", "--workloads=muladd_sum"]
  # As a user's shell has it: this test process has set TF_CPP_MIN_LOG_LEVEL (importing JAX does).
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}

  def run(*extra):
    return subprocess.run([*command, *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=240, check=False)

  quiet = run()
  assert quiet.returncode == 0, quiet.stderr
  noise = [line for line in quiet.stderr.splitlines()
           if line.strip() and not ROW_LINE.match(line) and not line.startswith("... ")]
  assert noise == []  # no TensorFlow import notices, no absl or XLA lines: what it does, the rows
  assert len([line for line in quiet.stderr.splitlines() if ROW_LINE.match(line)]) == 2
  verbose = run("--verbosity=0")
  assert verbose.returncode == 0, verbose.stderr
  assert NATIVE_LOG_LINE.search(verbose.stderr), verbose.stderr  # C++ INFO lines are back
