import jax
import jax.numpy as jnp
import pytest

import funcgrad as fg
from funcgrad import graphs
from tests.cli import run_in_process
from tests.helpers import assert_one_line_error, run_module

ARGS = [jax.ShapeDtypeStruct((3, 4), jnp.float32)] * 3


def test_jaxpr_is_the_traced_graph():
  text = graphs.jaxpr_text(fg.muladd_sum_grads, *ARGS)
  assert "a:f32[3,4] b:f32[3,4] c:f32[3,4]" in text
  for primitive in ("mul", "add", "reduce_sum"):
    assert primitive in text


def test_stablehlo_is_portable_text():
  text = graphs.stablehlo_text(fg.muladd_sum_grads, *ARGS)
  assert text.startswith("module @jit_muladd_sum_grads")
  assert "stablehlo.multiply" in text and "tensor<3x4xf32>" in text


def test_compiled_hlo_shows_the_fusion():
  text = graphs.compiled_hlo_text(fg.muladd_sum_grads, *ARGS)
  assert text.startswith("HloModule jit_muladd_sum_grads")
  # XLA fuses x*y + z into the reduction: one kernel reads x, y, z once.
  assert graphs.count_fusions(text) >= 1
  assert any("fusion(" in line and "reduce" in line for line in text.splitlines())


def test_cost_analysis_counts_flops_and_bytes():
  cost = graphs.cost_analysis(fg.muladd_sum_grads, *ARGS)
  assert cost["cost"]["flops"] >= 24  # 12 multiplies + 12 adds at least
  assert cost["memory"]["argument_size_in_bytes"] == 3 * 12 * 4
  assert cost["memory"]["output_size_in_bytes"] >= 4 + 3 * 12 * 4  # (plus alignment)


def test_cost_analysis_never_crashes_when_unsupported(monkeypatch):
  class NoAnalysis:
    def cost_analysis(self):
      raise NotImplementedError("not on this backend")

    memory_analysis = cost_analysis

  class Lowered:
    def compile(self):
      return NoAnalysis()

  class Traced:
    def lower(self):
      return Lowered()

  monkeypatch.setattr(graphs, "_traced", lambda fn, *args: Traced())
  assert graphs.cost_analysis(fg.muladd_sum_grads, *ARGS) == {"cost": None, "memory": None}


@pytest.mark.parametrize("show, expected", [
    ("jaxpr", "reduce_sum"), ("stablehlo", "stablehlo.multiply"), ("hlo", "fusion(s) on cpu"),
    ("cost", "flops")])
def test_graph_cli(show, expected):
  result = run_in_process("experiments.graph", "--workload=muladd_sum", "--shape=3x4",
                          f"--show={show}")
  assert result.returncode == 0, result.stderr
  assert expected in result.stdout


def test_graph_cli_abs_loss_and_bad_input():
  """The real-CLI smoke run, then bad input in-process."""
  result = run_module("experiments.graph", "--workload=abs_loss", "--shape=12")
  assert "abs" in result.stdout and "f32[12]" in result.stdout
  assert_one_line_error(run_in_process("experiments.graph", "--show=dot"), "--show=dot", "jaxpr")
  assert_one_line_error(run_in_process("experiments.graph", "--shape=3x"), "'3x'")


def test_compiled_hlo_has_no_source_metadata_unless_asked():
  plain = graphs.compiled_hlo_text(fg.muladd_sum_grads, *ARGS)
  kept = graphs.compiled_hlo_text(fg.muladd_sum_grads, *ARGS, source_metadata=True)
  assert "metadata=" not in plain and "FileNames" not in plain and "StackFrames" not in plain
  assert "metadata={" in kept and "grads.py" in kept  # XLA records where each op came from
  # Stripping removes only the metadata: the instructions are the same, line for line.
  assert graphs.strip_source_metadata(kept) == plain
  assert graphs.count_fusions(plain) == graphs.count_fusions(kept) >= 1


def test_strip_source_metadata_keeps_quoted_braces():
  line = '%m = f32[3] multiply(%a, %b), metadata={op_name="jit(f)/{x}" source_line=7}, foo=1'
  assert graphs.strip_source_metadata(line) == "%m = f32[3] multiply(%a, %b), foo=1"


def test_graph_cli_hlo_source_metadata_flag():
  plain = run_in_process("experiments.graph", "--show=hlo")
  kept = run_in_process("experiments.graph", "--show=hlo", "--source_metadata")
  assert plain.returncode == kept.returncode == 0, plain.stderr + kept.stderr
  assert plain.stdout.startswith("HloModule ") and "metadata=" not in plain.stdout
  assert "FileNames" in kept.stdout and "metadata={" in kept.stdout
