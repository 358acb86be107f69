"""`python -m experiments.crossover` from the repository root.

Runs the script `funcgrad.experiments.crossover`: the same as `funcgrad crossover` from any
folder.
"""

import runpy

if __name__ == "__main__":
  runpy.run_module("funcgrad.experiments.crossover", run_name="__main__", alter_sys=True)
