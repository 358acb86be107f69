"""Parsing the runner's comma-separated specs (sizes, names) with one-line errors."""

from collections.abc import Iterable


def parse_sizes(text: str) -> list[tuple[int, ...]]:
  """Parses '3x4,1000x1000' (2-D) and '12,1000000' (1-D) into shape tuples.

  Raises:
    ValueError: naming the bad size and the accepted form.
  """
  sizes = []
  for item in (part.strip() for part in text.split(",")):
    dims = item.split("x")
    if not item or len(dims) > 2 or not all(d.isdigit() and int(d) > 0 for d in dims):
      raise ValueError(f"Invalid size {item!r} in --sizes={text!r}: expected N or NxD with "
                       "positive integers, comma-separated (e.g. 3x4,1000x1000 or 12,1000000).")
    sizes.append(tuple(int(d) for d in dims))
  return sizes


def parse_names(text: str, valid: Iterable[str], what: str) -> list[str]:
  """Parses 'a,b' into names, each of which must be in `valid` ('all' means every one).

  Raises:
    ValueError: naming the unknown name and the valid ones.
  """
  valid = list(valid)
  names = [n.strip() for n in text.split(",") if n.strip()]
  if names == ["all"]:
    return valid
  for name in names:
    if name not in valid:
      raise ValueError(f"Unknown {what} {name!r}. Valid: {', '.join(valid)} (or all).")
  if not names:
    raise ValueError(f"No {what} given. Valid: {', '.join(valid)} (or all).")
  return list(dict.fromkeys(names))


