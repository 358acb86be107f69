"""A pytest plugin that writes each test's CPU time, to find where the suite's time goes.

  FUNCGRAD_TEST_CPU_TIMES=times.tsv python -m pytest -q -p tests.cpu_times

Each line: the test's CPU seconds in its worker (user + sys), in the processes it started and
waited for, its wall seconds, the pytest-xdist worker, and the test's id. CPU time moves less
than wall time with what else runs, so two commits are compared by the summed first two columns.
"""

import os
import resource
import time

import pytest

_OUT = "FUNCGRAD_TEST_CPU_TIMES"


def _cpu_s(who: int) -> float:
  usage = resource.getrusage(who)
  return usage.ru_utime + usage.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
  del nextitem
  path = os.environ.get(_OUT)
  if not path:
    yield
    return
  own, children = _cpu_s(resource.RUSAGE_SELF), _cpu_s(resource.RUSAGE_CHILDREN)
  start = time.perf_counter()
  yield
  line = (f"{_cpu_s(resource.RUSAGE_SELF) - own:.2f}\t"
          f"{_cpu_s(resource.RUSAGE_CHILDREN) - children:.2f}\t"
          f"{time.perf_counter() - start:.2f}\t{os.environ.get('PYTEST_XDIST_WORKER', '')}\t"
          f"{item.nodeid}\n")
  with open(path, "a", encoding="utf-8") as f:
    f.write(line)
