"""`python -m experiments.run_exported` from the repository root.

Runs the script `funcgrad.experiments.run_exported`: the same as `funcgrad run_exported` from any
folder.
"""

import runpy

if __name__ == "__main__":
  from funcgrad.experiments import install_early_signal_handlers

  install_early_signal_handlers()  # before the script's imports: Ctrl-C there is one line
  runpy.run_module("funcgrad.experiments.run_exported", run_name="__main__", alter_sys=True)
