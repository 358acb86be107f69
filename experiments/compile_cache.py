"""`python -m experiments.compile_cache` from the repository root.

Runs the script `funcgrad.experiments.compile_cache`: the same as `funcgrad compile_cache` from any
folder.
"""

import runpy

if __name__ == "__main__":
  runpy.run_module("funcgrad.experiments.compile_cache", run_name="__main__", alter_sys=True)
