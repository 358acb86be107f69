"""The tutorial experiments through their CLI (`python -m experiments.<name>`): one real-process
smoke run per script, the other runs through the same parse and main in-process (`tests.cli`)."""

import json
import pathlib

import pytest

from funcgrad import gpu_available
from tests.cli import run_in_process
from tests.helpers import assert_one_line_error, run_module


def test_env_check_text_and_json():
  text = run_module("experiments.env_check")
  assert text.returncode == 0, text.stderr
  assert "default backend" in text.stdout
  data = json.loads(run_in_process("experiments.env_check", "--format=json").stdout)
  assert "cpu" in data["platforms"] and data["packages"]["jax"]


@pytest.mark.usefixtures("x64")  # --x64 turns jax_enable_x64 on in this process: restored after
def test_dtype_table_formats():
  text = run_module("experiments.dtype_table")
  assert text.returncode == 0, text.stderr
  assert "torch.float32 or torch.float" in text.stdout and "jnp.bfloat16" in text.stdout
  markdown = run_in_process("experiments.dtype_table", "--format=markdown", "--x64").stdout
  assert markdown.startswith("| Data type |")
  assert "| 64-bit floating point | torch.float64 or torch.double |" in markdown
  rows = json.loads(run_in_process("experiments.dtype_table", "--format=json").stdout)
  assert len(rows) == 10 and rows[-1]["jax_dtype"] == "bfloat16"


def test_tensors():
  result = run_module("experiments.tensors")
  assert result.returncode == 0, result.stderr
  assert "same key again -> identical numbers: True" in result.stdout
  assert "needs a float dtype" in result.stdout


def _jax_lines(stdout: str) -> list[str]:
  return [line for line in stdout.splitlines() if line.startswith("# jax:")]


def test_tensors_jax_lines_are_plain_jax_with_the_helper_beside():
  lines = _jax_lines(run_in_process("experiments.tensors").stdout)
  for plain in ("jnp.zeros((2, 3), jnp.float32)", "jnp.empty((2, 3), jnp.float32)",
                "jnp.array([[1, 2, 3], [4, 5, 6]])", "jax.random.normal(key, (2, 3))",
                "jax.value_and_grad(lambda x, y: (x * y).sum(), argnums=0)(x, y)",
                "jax.value_and_grad(lambda x, y: (x * y).sum(), argnums=(0, 1))(x, y)"):
    assert any(line.startswith(f"# jax:   {plain}") or f"; {plain}" in line for line in lines), (
        plain, lines)
  assert all("   (funcgrad: " in line for line in lines), lines


def test_tensors_values_are_what_the_plain_jax_lines_give():
  """The numbers printed under each `# jax:` line are that call's, and the helper's."""
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  from funcgrad import randn  # noqa: PLC0415

  stdout = run_in_process("experiments.tensors", "--seed=3").stdout
  key = jax.random.key(3)
  np.testing.assert_array_equal(randn(key, (2, 3)), jax.random.normal(key, (2, 3)))
  assert str(jax.random.normal(key, (2, 3))) in stdout
  assert "value=11.0 grad_x=[3. 4.] grad_y=[1. 2.]" in stdout
  assert "jax.value_and_grad: TypeError: grad requires real- or complex-valued inputs" in stdout
  assert str(jnp.zeros((2, 3))) in stdout


def test_tensors_on_the_default_device_needs_no_device_put():
  lines = _jax_lines(run_in_process("experiments.tensors", "--device=cpu:0").stdout)
  assert lines[0].startswith("# jax:   jnp.zeros((2, 3), jnp.float32)   (funcgrad: ")


def test_gradients_agree_and_fix_the_swap():
  result = run_in_process("experiments.gradients")  # its real process: the launcher test below
  assert result.returncode == 0, result.stderr
  assert "x.grad [ 8. 12.]" in result.stdout
  assert "FAIL" not in result.stdout
  assert "all gradients agree with their closed forms" in result.stdout
  # With seed 0, grad_y (= x) is what the tutorial printed as grad_x: 1.7640524 first.
  assert "[[ 1.7640524" in result.stdout
  assert _jax_lines(result.stdout) == [
      "# jax:   jax.value_and_grad(lambda x, y, z: jnp.sum(x * y + z), argnums=(0, 1, 2))(x, y, z)"
      "   (funcgrad: muladd_sum_grads(x, y, z))",
      "# jax:   jax.grad(lambda x: jnp.sum(jnp.abs(2 * x**2 + 3 - target)))(x)   "
      "(funcgrad: abs_loss_grad(x, target))"]


@pytest.mark.skipif(gpu_available(), reason="checks the no-GPU path")
def test_device_placement_without_gpu():
  skipped = run_in_process("experiments.device_placement")
  assert skipped.returncode == 0, skipped.stderr
  # Every GPU step is shown, with its plain JAX call, and marked as skipped.
  assert _jax_lines(skipped.stdout) == [
      '# jax:   cpu_tensor = jax.device_put(jnp.zeros((2, 3)), jax.devices("cpu")[0])   '
      "(funcgrad: zeros((2, 3), device='cpu'))",
      "# jax:   device = jax.devices(\"gpu\")[0]   (funcgrad: resolve_device('cuda'))",
      "# jax:   gpu_tensor = jax.device_put(cpu_tensor, device)   "
      "(funcgrad: put(cpu_tensor, 'cuda'))",
      '# jax:   cpu_tensor_back = jax.device_put(gpu_tensor, jax.devices("cpu")[0])   '
      "(funcgrad: put(gpu_tensor, 'cpu'); to NumPy: to_host(gpu_tensor), jax.device_get)"]
  assert skipped.stdout.count("skipped: ") == 3
  assert "skipped: No gpu device for 'cuda': platforms present are cpu" in skipped.stdout
  assert_one_line_error(run_in_process("experiments.device_placement", "--require_gpu"),
                        "No gpu device", "platforms present are cpu")


def test_device_placement_cpu_round_trip():
  result = run_module("experiments.device_placement", "--device=cpu")
  assert result.returncode == 0, result.stderr
  assert "gpu_tensor on cpu:0" in result.stdout and "cpu_tensor_back on cpu:0" in result.stdout
  assert "skipped" not in result.stdout


@pytest.mark.gpu
def test_device_placement_gpu_round_trip():
  result = run_module("experiments.device_placement", "--require_gpu")
  assert result.returncode == 0, result.stderr
  assert "gpu_tensor on cuda:0" in result.stdout and "cpu_tensor_back on cpu:0" in result.stdout


@pytest.mark.parametrize("module, args, fragments", [
    ("experiments.env_check", ["--format=xml"], ["--format=xml", "text|json"]),
    ("experiments.dtype_table", ["--format=xml"], ["--format=xml", "text|markdown|json"]),
    ("experiments.tensors", ["--dtype=float128"], ["'float128'", "Valid names", "float32"]),
    ("experiments.tensors", ["--dtype=float64"], ["float64", "jax_enable_x64"]),
    ("experiments.tensors", ["--dtype=int32"], ["int32", "not a float dtype"]),
    ("experiments.tensors", ["--device=cuda:x"], ["'cuda:x'", "cpu, cpu:N, cuda"]),
    ("experiments.device_placement", ["--device=cpu:7"], ["'cpu:7'", "1 cpu device"]),
    ("experiments.device_placement", ["--device=tpu0"], ["'tpu0'", "Valid"]),
    ("experiments.gradients", ["--n=0"], ["--n=0"]),
    ("experiments.gradients", ["--bogus=1"], ["bogus"]),
    ("experiments.gradients", ["stray"], ["stray"]),
])
def test_bad_input_is_one_clear_line(module, args, fragments):
  assert_one_line_error(run_in_process(module, *args), *fragments)


def test_the_launcher_knows_every_script():
  import importlib.util  # noqa: PLC0415

  from funcgrad import experiments  # noqa: PLC0415

  for name in experiments.SCRIPTS:
    assert importlib.util.find_spec(f"funcgrad.experiments.{name}") is not None, name
    assert name in experiments.USAGE


@pytest.mark.parametrize("name, args, restart", [
    ("compare", [], ("auto", {})),
    ("compare", ["--sizes=3x4", "--allocator=system", "--allocator=mimalloc"], ("mimalloc", {})),
    ("optimize", ["--thread_pools=passive"], ("auto", "passive")),
    ("benchmark", ["--allocator=system", "--", "--allocator=jemalloc"], ("system", {})),
    ("tensors", ["--allocator=system"], None),  # not a timing script: no --allocator
    ("compare", ["--allocator", "system"], None),  # absl's parse tells what this means
    ("compare", ["-allocator=system"], None),
    ("compare", ["--flagfile=f.txt"], None),
    ("compare", ["--help"], None),
])
def test_the_launchers_restart_before_the_scripts_imports(name, args, restart, monkeypatch):
  from funcgrad import allocator, experiments, thread_pools  # noqa: PLC0415

  calls = []
  monkeypatch.setattr(allocator, "reexec_with", lambda n, environ: calls.append((n, environ)))
  experiments.restart_early(name, args)
  if restart is None:
    assert calls == []
  else:
    pools = thread_pools.environment(restart[1]) if isinstance(restart[1], str) else restart[1]
    assert calls == [(restart[0], pools)]


def test_an_early_restart_that_cannot_be_done_is_left_to_main(monkeypatch):
  from funcgrad import allocator, experiments  # noqa: PLC0415
  from funcgrad.errors import UsageError  # noqa: PLC0415

  def refuse(name, environ):
    raise UsageError(f"no {name}")

  monkeypatch.setattr(allocator, "reexec_with", refuse)
  experiments.restart_early("compare", ["--allocator=jemalloc"])  # main says why, in one line
  experiments.restart_early("compare", ["--allocator=bogus"])


def test_the_early_restart_knows_every_script_that_restarts():
  import importlib.util  # noqa: PLC0415

  from funcgrad import experiments  # noqa: PLC0415

  restarting = [name for name in experiments.SCRIPTS if "define_allocator()" in pathlib.Path(
      importlib.util.find_spec(f"funcgrad.experiments.{name}").origin).read_text()]
  assert restarting == list(experiments.RESTARTING)


@pytest.mark.parametrize("argv, code, stream, fragment", [
    (["funcgrad"], 2, "out", "usage: funcgrad <experiment>"),
    (["funcgrad", "--help"], 0, "out", "funcgrad <experiment> --help lists its flags"),
    (["funcgrad", "nope"], 2, "err", "error: unknown experiment 'nope'. Valid: env_check, "),
])
def test_the_launcher_without_a_script(argv, code, stream, fragment, capsys):
  from funcgrad import experiments  # noqa: PLC0415

  with pytest.raises(SystemExit) as exit_:
    experiments.main(argv)
  assert exit_.value.code == code
  captured = capsys.readouterr()
  assert fragment in (captured.out if stream == "out" else captured.err)


@pytest.mark.slow  # quick subset (-m "not slow") within 90 s: a sweep or a real process
def test_funcgrad_runs_a_script_from_any_folder_and_lists_its_flags(tmp_path):
  """`python -m funcgrad` is the console script's entry point; from a folder without the repo."""
  import os  # noqa: PLC0415
  import subprocess  # noqa: PLC0415
  import sys  # noqa: PLC0415

  from tests.helpers import ROOT  # noqa: PLC0415

  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  ran = subprocess.run([sys.executable, "-m", "funcgrad", "gradients", "--n=2", "--d=2"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
  assert ran.returncode == 0, ran.stderr
  assert "all gradients agree with their closed forms" in ran.stdout
  helped = subprocess.run([sys.executable, "-m", "funcgrad", "tensors", "--help"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=240)
  assert "--dtype" in helped.stdout + helped.stderr and "Traceback" not in helped.stderr
