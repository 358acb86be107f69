"""Parsing the runner's comma-separated lists (names, integers) with one-line errors.

Shapes are parsed by `funcgrad.shapes`; `parse_sizes` is kept as its name for `--sizes`.
"""

from collections.abc import Iterable

from funcgrad.errors import UsageError
from funcgrad.shapes import Shape, parse_shapes


def parse_sizes(text: str, flag: str = "--sizes") -> list[Shape]:
  """'3x4,1000x1000' -> [(3, 4), (1000, 1000)]; '12' -> [(12,)] (duplicates dropped).

  Raises:
    UsageError: naming the flag, the bad size and the accepted form.
  """
  return parse_shapes(text, flag, max_rank=2)


def parse_names(text: str, valid: Iterable[str], what: str, flag: str | None = None) -> list[str]:
  """Parses 'a,b' into names, each of which must be in `valid` ('all' means every one);
  duplicates are dropped.

  Raises:
    UsageError: naming the flag, the unknown name and the valid ones.
  """
  valid = list(valid)
  where = f" in {flag}" if flag else ""
  names = [n.strip() for n in text.split(",") if n.strip()]
  if names == ["all"]:
    return valid
  for name in names:
    if name not in valid:
      raise UsageError(f"Unknown {what} {name!r}{where}. Valid: {', '.join(valid)} (or all).")
  if not names:
    raise UsageError(f"No {what} given{where}. Valid: {', '.join(valid)} (or all).")
  return list(dict.fromkeys(names))


def parse_ints(text: str, flag: str) -> list[int]:
  """'0,1' -> [0, 1] (non-negative, duplicates dropped).

  Raises:
    UsageError: naming the flag and the bad item.
  """
  items = [t.strip() for t in text.split(",")]
  if not all(t.isascii() and t.isdigit() and len(t) <= 18 for t in items):
    raise UsageError(f"Invalid {flag}={text!r}: expected non-negative integers, comma-separated "
                     "(e.g. 0,1).")
  return list(dict.fromkeys(int(t) for t in items))
