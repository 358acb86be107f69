"""The tutorial notebook runs top to bottom, and a `Comparison` renders as a table and a plot."""

import html
import re

import jax.numpy as jnp
import matplotlib
import nbformat
import numpy as np
import pytest

import funcgrad
from funcgrad.bench import notebook_display
from funcgrad.errors import UsageError
from tests import notebook

matplotlib.use("Agg")


def _loss(w, x):
  return jnp.sum(jnp.tanh(x @ w) ** 2)


@pytest.fixture(scope="module")
def comparison():
  w, x = np.ones((16, 4), np.float32) / 16, np.ones((8, 16), np.float32)
  return funcgrad.compare(_loss, w, x, argnums=(0, 1), min_run_time=0.01)


def test_comparison_html_is_a_table_of_every_engine(comparison):
  text = comparison._repr_html_()
  assert text == notebook_display.comparison_html(comparison)
  assert text.startswith("<table><caption>") and text.endswith("</tbody></table>")
  rows = re.findall(r"<tr>(.*?)</tr>", text)
  assert len(rows) == 1 + 2  # header, eager, jit
  cells = [re.findall(r"<td>(.*?)</td>", row) for row in rows[1:]]
  (eager,), (jit,) = ([c for c in cells if c[0] == e] for e in ("eager", "jit"))
  ratio, low, high = comparison.speedup("eager")
  assert eager[4] == f"{ratio:.3g}x" and eager[5] == f"[{low:.3g}x, {high:.3g}x]"
  assert eager[6] == "never" or re.fullmatch(r"1 call|\d+ calls", eager[6])
  assert jit[4] == "1x (baseline)"
  assert html.escape("test_notebook:_loss") in text or "_loss" in text


def test_comparison_html_escapes_and_shows_a_failed_row(comparison):
  bad = comparison.results[0].__class__(**{**comparison.results[0].to_dict(),
                                           "status": "wrong", "error": "<off by 1>"})
  shown = notebook_display.comparison_html(
      funcgrad.Comparison([bad], [], comparison.baseline, comparison.machine))
  assert "&lt;off by 1&gt;" in shown and "<off" not in shown


def test_plot_draws_each_speedup_with_its_interval(comparison):
  ax = comparison.plot()
  (line,) = [c for c in ax.get_lines() if len(c.get_xdata()) == 1 and c.get_marker() == "o"]
  ratio, low, high = comparison.speedup("eager")
  assert line.get_xdata()[0] == pytest.approx(ratio)
  assert ax.get_xscale() == "log"
  assert [t.get_text() for t in ax.get_yticklabels()] == ["eager"]
  left, right = ax.get_xlim()
  assert left < min(low, 1.0) and right > max(high, 1.0)  # the interval and 1x both in view


def test_plot_without_speedups_is_a_usage_error(comparison):
  empty = funcgrad.Comparison(comparison.results, [], comparison.baseline, comparison.machine)
  with pytest.raises(UsageError, match="Nothing to plot: no engine was timed against jit"):
    empty.plot()


def _outputs(nb, kind):
  return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
          if o.output_type == kind]


def _text(nb) -> str:
  return "".join(o.text for o in _outputs(nb, "stream") if o.name == "stdout")


def _check_executed(nb) -> None:
  assert not _outputs(nb, "error")
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert [c.execution_count for c in code] == list(range(1, len(code) + 1))  # top to bottom
  text = _text(nb)
  assert "x.grad    [ 8. 12.]" in text
  assert "dloss/dy  [2. 2.]   dloss/dz [1. 1.]" in text
  for name in ("numpy (fixed)", "jax", "jax.jit"):
    assert re.search(rf"^{re.escape(name)} +dc/dx = y, dc/dy = x, dc/dz = 1: True$", text, re.M)
  assert "False" not in text.split("numpy (fixed)")[1]  # no framework disagrees
  rich = _outputs(nb, "execute_result") + _outputs(nb, "display_data")
  assert any("<table><caption>" in o.data.get("text/html", "") for o in rich)
  assert any("image/png" in o.data for o in rich)


def test_the_committed_notebook_holds_the_outputs_of_a_real_run():
  _check_executed(nbformat.read(notebook.NOTEBOOK, as_version=4))


def test_the_notebook_follows_the_original_posts_sections():
  nb = nbformat.read(notebook.NOTEBOOK, as_version=4)
  headings = [line for c in nb.cells if c.cell_type == "markdown"
              for line in c.source.splitlines() if line.startswith("## ")]
  assert [h.split(". ", 1)[-1].split(":")[0] for h in headings] == [
      "## Installation", "Versions", "Tensors", "dtypes", "Devices",
      "The same gradient in four frameworks", "The first autograd example",
      "Eager against jit, measured"]


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom():
  executed, _ = notebook.execute()
  _check_executed(executed)
