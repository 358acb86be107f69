"""`python -m experiments.graph` from the repository root.

Runs the script `funcgrad.experiments.graph`: the same as `funcgrad graph` from any
folder.
"""

import runpy

if __name__ == "__main__":
  runpy.run_module("funcgrad.experiments.graph", run_name="__main__", alter_sys=True)
