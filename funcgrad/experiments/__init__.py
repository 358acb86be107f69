"""The experiments: thin absl scripts, one per tutorial section and per measurement.

From any folder, after `pip install -e .`: `funcgrad <name> [flags]` (or `python -m funcgrad
<name>`); from the repository root also `python -m experiments.<name>`. Each is
`funcgrad.experiments.<name>`, run as `__main__`; `funcgrad <name> --help` lists its flags.
"""

import runpy
import sys

SCRIPTS = {
    "env_check": "the versions of Python, JAX, CUDA/cuDNN and the peers",
    "tensors": "creating tensors: zeros, uninitialised, from data with a dtype and a device",
    "dtype_table": "the dtype table, torch beside JAX",
    "device_placement": "moving an array to the GPU and back",
    "gradients": "c = sum(x*y + z) and the first autograd example, with their closed forms",
    "compare": "compiled against eager, beside NumPy, PyTorch and TensorFlow (your function too)",
    "crossover": "the size where one engine starts to beat another",
    "optimize": "optax fits, loop by loop",
    "graph": "the static graph: jaxpr, StableHLO, HLO",
    "export_graph": "serialise a compiled graph with jax.export",
    "run_exported": "run a serialised graph",
    "compile_cache": "cold, persistent-cache and executable-cache first calls",
    "scaling": "one case over 1..N devices",
    "distributed": "a multi-process job",
    "benchmark": "the project's measured targets",
}

USAGE = ("usage: funcgrad <experiment> [flags]   (funcgrad <experiment> --help lists its flags)\n\n"
         + "\n".join(f"  {name:<17} {what}" for name, what in SCRIPTS.items()))


def main(argv: list[str] | None = None) -> None:
  """`funcgrad <experiment> [flags]`: runs `funcgrad.experiments.<experiment>` as a script."""
  argv = sys.argv if argv is None else argv
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(USAGE)
    sys.exit(0 if len(argv) >= 2 else 2)
  name = argv[1]
  if name not in SCRIPTS:
    print(f"error: unknown experiment {name!r}. Valid: {', '.join(SCRIPTS)}.", file=sys.stderr)
    sys.exit(2)
  sys.argv = [f"funcgrad {name}", *argv[2:]]
  runpy.run_module(f"funcgrad.experiments.{name}", run_name="__main__", alter_sys=True)
