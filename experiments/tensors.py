"""`python -m experiments.tensors` from the repository root.

Runs the script `funcgrad.experiments.tensors`: the same as `funcgrad tensors` from any
folder.
"""

import runpy

if __name__ == "__main__":
  runpy.run_module("funcgrad.experiments.tensors", run_name="__main__", alter_sys=True)
