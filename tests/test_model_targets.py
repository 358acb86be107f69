"""The benchmark's model targets, on rows with known times."""

import pytest

from funcgrad.bench import headline
from funcgrad.bench.runner import Result


def _row(engine, median, ok=True, **kw):
  return Result(workload="mlp", engine=engine, backend="cpu", shape=[128, 512], dtype="float32",
                n_elements=128 * 512, median_s=median, ok=ok, status="ok" if ok else "wrong",
                **kw)


def test_model_targets_pass_and_miss():
  small = [_row("eager", 12e-3), _row("jit", 3e-3), _row("torch_eager", 4e-3),
           _row("tf_xla", 1e-3, ok=False)]  # a wrong row never counts
  large = [_row("jit", 0.1, gflops=60.0, peak_gflops=100.0, pct_of_peak_flops=60.0)]
  eager, peer, peak = headline.model_targets({"mlp 128x512": small, "peak mlp 1024x2048": large})
  assert eager.measured == pytest.approx(4.0) and eager.passed
  assert peer.measured == pytest.approx(4 / 3) and peer.passed and "torch_eager" in peer.detail
  assert peak.measured == 60.0 and peak.passed and "60 GFLOP/s of 100" in peak.detail
  slow = [_row("eager", 4e-3), _row("jit", 2e-3), _row("numpy", 1e-3)]
  eager, peer = headline.model_targets({"attention 256x256": slow})
  assert not eager.passed and not peer.passed and "numpy" in peer.detail


def test_fusion_target_counts_the_compiled_scan():
  (target,) = headline.fusion_targets(12)
  assert target.name == "fusions per Adam step (scan)"
  assert 0 < target.measured <= 3 and target.passed
  assert "scan_fused" in target.detail


def test_strict_exit_status(capsys):
  from funcgrad.bench.targets import Target, exit_status

  passed, missed = Target("a", 2.0, 1.0, "x", True), Target("b", 0.5, 1.0, "x", True)
  assert exit_status(True, [passed, missed], strict=False) == 0  # a MISS is a result
  assert exit_status(True, [passed, missed], strict=True) == 1
  assert "--strict: 1 of 2 targets missed: b" in capsys.readouterr().err
  assert exit_status(True, [passed], strict=True) == 0
  assert exit_status(False, [passed], strict=False) == 1  # a wrong row always fails the run
