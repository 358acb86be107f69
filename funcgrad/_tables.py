"""Plain-text and Markdown tables from rows of strings (one renderer for every report)."""

from collections.abc import Sequence


def render_text(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """Renders a left-aligned table with a rule under the header."""
  widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]

  def line(cells: Sequence[str]) -> str:
    return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

  return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def render_markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """Renders a GitHub-flavoured Markdown table."""
  out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
  out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(out)
