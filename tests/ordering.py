"""The order pytest-xdist's workers run the tests in: the longest first, spread over the workers.

`--dist worksteal` hands worker k the k-th of W equal runs of the collected items (by count), and
an idle worker later steals from the *end* of a busy one's queue. In collection order the longest
tests (a documented benchmark command, the gpu_check smoke run, the sharded sweeps' fixture) can
sit at the end of one worker's run with nothing left to steal: the other core idles. Here the
known-long tests (tests/durations.json: seconds measured on a 2-core VM) are dealt out longest
first, each to the worker with the least known work so far, at the head of its run; the other
tests follow in collection order, filling each run to the count worksteal gives it.

Tests named by a `together` prefix stay one unit, in collection order, on one worker: the ones
that share an expensive module-scoped fixture (built once per worker that runs any of them) or
read what an earlier one wrote.
"""

import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")

DURATIONS = pathlib.Path(__file__).with_name("durations.json")


def load(path: pathlib.Path = DURATIONS) -> tuple[dict[str, float], tuple[str, ...]]:
  """(seconds per test id, `together` prefixes) from a durations file."""
  document = json.loads(path.read_text())
  return dict(document["seconds"]), tuple(document["together"])


def _unit_key(test_id: str, together: Sequence[str]) -> str:
  return next((prefix for prefix in together if test_id.startswith(prefix)), test_id)


def chunk_sizes(n: int, workers: int) -> list[int]:
  """How many of n pending items worksteal sends each of `workers` idle workers at the start."""
  sizes = []
  for i in range(workers):
    sizes.append(n // (workers - i))
    n -= sizes[-1]
  return sizes


def longest_first(items: Sequence[T], ids: Sequence[str], seconds: Mapping[str, float],
                  together: Sequence[str], workers: int) -> list[T]:
  """`items` reordered so that each worker's run starts with its share of the known-long tests.

  Args:
    items: the collected items, in collection order.
    ids: each item's test id (pytest's nodeid).
    seconds: known seconds per test id; an id not in it counts as quick.
    together: id prefixes whose tests form one unit (kept in order, on one worker).
    workers: the number of workers; below 2 the order is left as it is.

  Returns:
    The same items, each once.
  """
  if workers < 2:
    return list(items)
  units: dict[str, list[int]] = {}
  for i, test_id in enumerate(ids):
    units.setdefault(_unit_key(test_id, together), []).append(i)
  known = {key: sum(seconds.get(ids[i], 0.0) for i in members) for key, members in units.items()}
  long_units = sorted((key for key in units if known[key] > 0), key=lambda k: -known[k])
  heads: list[list[int]] = [[] for _ in range(workers)]
  load = [0.0] * workers
  for key in long_units:  # longest first, each to the least loaded worker
    k = load.index(min(load))
    heads[k] += units[key]
    load[k] += known[key]
  placed = {i for head in heads for i in head}
  rest = [i for i in range(len(items)) if i not in placed]
  order: list[int] = []
  end = 0
  for head, size in zip(heads, chunk_sizes(len(items), workers), strict=True):
    end += size  # where worksteal ends this worker's run
    fill = max(0, end - len(order) - len(head))
    order += head + rest[:fill]
    del rest[:fill]
  order += rest
  return [items[i] for i in order]
