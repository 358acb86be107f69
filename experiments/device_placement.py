"""`python -m experiments.device_placement` from the repository root.

Runs the script `funcgrad.experiments.device_placement`: the same as `funcgrad
device_placement` from any folder.
"""

import runpy

if __name__ == "__main__":
  from funcgrad.experiments import install_early_signal_handlers

  install_early_signal_handlers()  # before the script's imports: Ctrl-C there is one line
  runpy.run_module("funcgrad.experiments.device_placement", run_name="__main__", alter_sys=True)
