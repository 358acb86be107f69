"""Executing notebooks/tutorial.ipynb top to bottom, in a kernel of this very Python.

The kernel is this interpreter with ipykernel, registered in a temporary Jupyter path (nothing
is installed in the user's Jupyter), and it imports this checkout's `funcgrad`. Run as a script
to refresh the committed outputs from a real run:

  python -m tests.notebook            # executes notebooks/tutorial.ipynb and saves it in place
"""

import contextlib
import json
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Iterator

import nbformat
from nbclient import NotebookClient

from tests.helpers import ROOT

NOTEBOOK = ROOT / "notebooks" / "tutorial.ipynb"
KERNEL_NAME = "funcgrad-tests"
TIMEOUT_S = 600  # per cell


@contextlib.contextmanager
def this_python_kernel() -> Iterator[str]:
  """A kernelspec for this interpreter in a temporary JUPYTER_PATH; yields its name."""
  saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "PYTHONPATH")}
  with tempfile.TemporaryDirectory() as folder:
    spec = pathlib.Path(folder) / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "funcgrad tests", "language": "python"}))
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [folder, saved["JUPYTER_PATH"]]))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), saved["PYTHONPATH"]]))
    try:
      yield KERNEL_NAME
    finally:
      for name, value in saved.items():
        if value is None:
          os.environ.pop(name, None)
        else:
          os.environ[name] = value


def execute(path: pathlib.Path = NOTEBOOK) -> tuple[nbformat.NotebookNode, float]:
  """Runs every cell in order (from the notebook's folder); raises on the first failing cell.

  Returns:
    The executed notebook and the seconds it took.
  """
  notebook = nbformat.read(path, as_version=4)
  with this_python_kernel() as kernel:
    client = NotebookClient(notebook, kernel_name=kernel, timeout=TIMEOUT_S,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
  # Saved as a plain Python 3 notebook: the temporary kernel's name means nothing elsewhere.
  notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python",
                                     "name": "python3"}
  return notebook, time.perf_counter() - start


if __name__ == "__main__":
  executed, seconds = execute()
  nbformat.write(executed, NOTEBOOK)
  print(f"executed {NOTEBOOK.relative_to(ROOT)} in {seconds:.1f} s and saved its outputs")
