"""Shapes and lists as text, one way everywhere: '3x4' is a 3x4 shape, ',' separates the items
of a list (shapes, names, integers).

Every flag that takes a shape (`--sizes`, `--shape`, `--shapes`, `--mesh`, `--size`) or a list
(`--engines`, `--workloads`, `--argnums`, ...) parses it here, so every one accepts the same forms
and a bad one is reported the same way: one line naming the flag, the bad text and the allowed
form.
"""

import math
from collections.abc import Iterable, Sequence

from funcgrad._types import Shape
from funcgrad.errors import UsageError

SCALAR = "scalar"  # the text of a rank-0 shape
MAX_DIM = 2**31 - 1  # XLA's dimensions are 64-bit, but past this a typo is likelier than a need
MAX_ELEMENTS = 2**48  # a product past 2**63 aborts XLA's shape code (not even an exception)


def format_shape(shape: Sequence[int | str]) -> str:
  """(3, 4) -> '3x4'; (12,) -> '12'; () -> 'scalar'."""
  return "x".join(map(str, shape)) if len(shape) else SCALAR


def _is_dim(part: str) -> bool:
  # Length first: int() of a 5000-digit string raises ValueError (CPython's digit limit).
  return part.isascii() and part.isdigit() and len(part) <= 10 and 0 < int(part) <= MAX_DIM


def parse_shape(text: str, flag: str = "--shape", max_rank: int | None = None,
                symbolic: bool = False, scalar: bool = False) -> tuple[int | str, ...]:
  """'3x4' -> (3, 4); '12' -> (12,); with `symbolic`, 'NxD' -> ('N', 'D').

  Args:
    text: the shape as text.
    flag: the flag it came from, for the error message.
    max_rank: the most dimensions allowed (None: any).
    symbolic: also accept dimension names (identifiers) instead of sizes, all or none.
    scalar: also accept 'scalar' for a rank-0 shape.

  Raises:
    UsageError: naming the flag, the bad text and the accepted form.
  """
  item = text.strip()
  if scalar and item == SCALAR:
    return ()
  parts = [p.strip() for p in item.split("x")]
  rank_ok = max_rank is None or len(parts) <= max_rank
  if rank_ok and all(_is_dim(p) for p in parts):
    shape = tuple(int(p) for p in parts)
    if math.prod(shape) > MAX_ELEMENTS:
      raise UsageError(f"Shape {text!r} in {flag} has {math.prod(shape):.3g} elements; at most "
                       f"{MAX_ELEMENTS:.3g} (2**48) are accepted.")
    return shape
  if rank_ok and symbolic and all(p.isidentifier() and p.isascii() for p in parts):
    return tuple(parts)
  form = ("N or NxD with positive integers" if max_rank == 2
          else "positive integers joined by x (12, 3x4, 2x3x4)") + f", each at most {MAX_DIM}"
  extra = (" or dimension names (N, NxD)" if symbolic else "") + (" or 'scalar'" if scalar else "")
  raise UsageError(f"Invalid shape {text!r} in {flag}: expected {form}{extra}.")


def parse_shapes(text: str, flag: str = "--sizes", max_rank: int | None = None,
                 sep: str = ",", scalar: bool = False, unique: bool = True) -> list[Shape]:
  """'3x4,1000x1000' -> [(3, 4), (1000, 1000)]: shapes separated by `sep` (duplicates dropped
  when `unique`: a list of sizes; kept otherwise: one shape per argument).

  Raises:
    UsageError: naming the flag and the bad shape.
  """
  items = text.split(sep)
  if not text.strip():
    raise UsageError(f"No shape given in {flag}={text!r}: expected e.g. 3x4{sep}1000x1000.")
  shapes = [parse_shape(item, flag, max_rank, scalar=scalar) for item in items]
  return list(dict.fromkeys(shapes)) if unique else shapes  # type: ignore[return-value]


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
