"""The static graph made visible: what was traced, what XLA made of it, and what it costs.

TensorFlow 1's case for the static graph was: the same graph is reused every iteration, the
framework optimises it, and it can be serialised and run without the original code. In JAX:

| claim                       | here                                                        |
|-----------------------------|-------------------------------------------------------------|
| one graph, reused           | `jaxpr_text`: the traced program `jax.jit` caches per shape  |
| the framework optimises it  | `compiled_hlo_text` (XLA's fusions), `cost_analysis`         |
| serialised, run without code| `stablehlo_text`; `funcgrad.exporting` writes/reads files    |
"""

import re
from collections.abc import Callable
from typing import Any

import jax


def _traced(fn: Callable[..., Any], *args: Any) -> Any:
  return jax.jit(fn).trace(*args)


def jaxpr_text(fn: Callable[..., Any], *args: Any) -> str:
  """The jaxpr `jax.jit` traces `fn` to for these argument shapes: the graph it reuses."""
  return str(_traced(fn, *args).jaxpr)


def stablehlo_text(fn: Callable[..., Any], *args: Any) -> str:
  """The StableHLO module (the portable form `jax.export` serialises), before optimisation."""
  return _traced(fn, *args).lower().as_text()


# The tables of Python source locations XLA prints before the computations, and the metadata
# attribute on each instruction (op name, source file and line, stack frame).
_SOURCE_TABLES = ("FileNames", "FunctionNames", "FileLocations", "StackFrames")
_METADATA = re.compile(r',? metadata=\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\}')


def strip_source_metadata(hlo_text: str) -> str:
  """HLO text without the Python source locations: the source tables and each `metadata={...}`.

  Examples:
    >>> strip_source_metadata('%a = f32[] add(%x, %y), metadata={op_name="add" source_line=3}')
    '%a = f32[] add(%x, %y)'
  """
  paragraphs = hlo_text.split("\n\n")
  kept = [p for p in paragraphs if p.strip().split("\n", 1)[0] not in _SOURCE_TABLES]
  text = re.sub(r"\n{3,}", "\n\n", "\n\n".join(kept))
  return _METADATA.sub("", text)


def compiled_hlo_text(fn: Callable[..., Any], *args: Any, source_metadata: bool = False) -> str:
  """The HLO after XLA's optimisation passes for the default backend: look for `fusion`.

  Args:
    fn: the function, jitted here.
    *args: arrays or `jax.ShapeDtypeStruct`s to trace it on.
    source_metadata: keep the Python source locations XLA records (the file, function and
      line of every instruction); without them the text is the computations alone.
  """
  text = _traced(fn, *args).lower().compile().as_text()
  return text if source_metadata else strip_source_metadata(text)


def _as_dict(analysis: Any) -> dict[str, Any] | None:
  if analysis is None:
    return None
  if isinstance(analysis, list | tuple):  # older jaxlibs: one dict per device
    analysis = analysis[0] if analysis else None
  if analysis is None:
    return None
  if isinstance(analysis, dict):
    return {k: float(v) for k, v in analysis.items()}
  fields = [f for f in dir(analysis) if f.endswith("_in_bytes")]
  return {f: int(getattr(analysis, f)) for f in fields}


def cost_analysis(fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
  """The compiler's cost and memory estimates for `fn` on these arguments.

  Returns:
    `{"cost": {...} | None, "memory": {...} | None}`: flops and bytes accessed as XLA counts them,
    and argument/output/temporary buffer sizes. A backend that does not provide one gives None.
  """
  compiled = _traced(fn, *args).lower().compile()
  result = {}
  for name, method in (("cost", "cost_analysis"), ("memory", "memory_analysis")):
    try:
      result[name] = _as_dict(getattr(compiled, method)())
    except Exception:  # noqa: BLE001 - unsupported on this backend: report None, never crash.
      result[name] = None
  return result


def count_fusions(hlo_text: str) -> int:
  """How many fused computations XLA emitted (kernels that each read inputs once)."""
  return sum(1 for line in hlo_text.splitlines() if " fusion(" in line)


def _while_loops(hlo_text: str) -> list[tuple[str, int]]:
  """Each `while` of an optimised HLO module: its body's text and XLA's known trip count."""
  loops = []
  for line in hlo_text.splitlines():
    if not (name := re.search(r" while\(.*?body=%?([\w.\-]+)", line)):
      continue
    trips = re.search(r'"known_trip_count":\{"n":"(\d+)"', line)
    body = re.search(rf"^%?{re.escape(name.group(1))} .*?\{{\n(.*?)^\}}", hlo_text, re.S | re.M)
    if body and trips:
      loops.append((body.group(1), int(trips.group(1))))
  return loops


def fusions_per_step(hlo_text: str, steps: int) -> float:
  """Fused kernels per step of a compiled training program that runs `steps` steps.

  A program with loops (a `lax.scan`): the fusions of each `while` body times its known trip
  count, over `steps` (an unrolled body runs several steps per trip); a program without (one
  jitted step): all its fusions, over `steps`.
  """
  loops = _while_loops(hlo_text)
  if not loops:
    return count_fusions(hlo_text) / steps
  return sum(count_fusions(body) * trips for body, trips in loops) / steps
