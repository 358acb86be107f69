"""`python -m experiments.env_check` from the repository root.

Runs the script `funcgrad.experiments.env_check`: the same as `funcgrad env_check` from any
folder.
"""

import runpy

if __name__ == "__main__":
  from funcgrad.experiments import install_early_signal_handlers

  install_early_signal_handlers()  # before the script's imports: Ctrl-C there is one line
  runpy.run_module("funcgrad.experiments.env_check", run_name="__main__", alter_sys=True)
