"""`python -m experiments.gradients` from the repository root.

Runs the script `funcgrad.experiments.gradients`: the same as `funcgrad gradients` from any
folder.
"""

import runpy

if __name__ == "__main__":
  from funcgrad.experiments import install_early_signal_handlers

  install_early_signal_handlers()  # before the script's imports: Ctrl-C there is one line
  runpy.run_module("funcgrad.experiments.gradients", run_name="__main__", alter_sys=True)
