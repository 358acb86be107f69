"""`python -m experiments.crossover` from the repository root.

Runs the script `funcgrad.experiments.crossover`: the same as `funcgrad crossover` from any
folder.
"""

import runpy

if __name__ == "__main__":
  from funcgrad.experiments import install_early_signal_handlers

  install_early_signal_handlers()  # before the script's imports: Ctrl-C there is one line
  runpy.run_module("funcgrad.experiments.crossover", run_name="__main__", alter_sys=True)
