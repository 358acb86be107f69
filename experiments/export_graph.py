"""`python -m experiments.export_graph` from the repository root.

Runs the script `funcgrad.experiments.export_graph`: the same as `funcgrad export_graph` from any
folder.
"""

import runpy

if __name__ == "__main__":
  runpy.run_module("funcgrad.experiments.export_graph", run_name="__main__", alter_sys=True)
