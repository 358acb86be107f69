"""`python -m experiments.compile_cache` from the repository root.

Runs the script `funcgrad.experiments.compile_cache`: the same as `funcgrad compile_cache` from any
folder.
"""

import runpy

if __name__ == "__main__":
  from funcgrad.experiments import install_early_signal_handlers

  install_early_signal_handlers()  # before the script's imports: Ctrl-C there is one line
  runpy.run_module("funcgrad.experiments.compile_cache", run_name="__main__", alter_sys=True)
