"""`python -m experiments.export_graph` from the repository root.

Runs the script `funcgrad.experiments.export_graph`: the same as `funcgrad export_graph` from any
folder.
"""

if __name__ == "__main__":
  from funcgrad.experiments import launch

  launch("export_graph")  # signal handlers, the restart it asks for, then its imports
