"""The longest-first order of the tests over pytest-xdist's workers (tests/ordering.py)."""

from tests import ordering


def test_chunk_sizes_are_what_worksteal_sends_each_idle_worker():
  assert ordering.chunk_sizes(10, 2) == [5, 5]
  assert ordering.chunk_sizes(11, 2) == [5, 6]
  assert ordering.chunk_sizes(10, 3) == [3, 3, 4]
  assert ordering.chunk_sizes(1, 2) == [0, 1]


def test_long_tests_lead_each_workers_run_and_the_rest_keep_their_order():
  ids = [f"t{i}" for i in range(10)]
  seconds = {"t9": 50.0, "t8": 40.0, "t2": 30.0, "t5": 5.0}
  order = ordering.longest_first(ids, ids, seconds, (), workers=2)
  assert sorted(order) == sorted(ids)
  first, second = order[:5], order[5:]  # worksteal's two runs
  # 50 -> worker 0, 40 -> worker 1, 30 -> worker 1 (40 < 50), 5 -> worker 0 (50 < 70).
  assert first == ["t9", "t5", "t0", "t1", "t3"]
  assert second == ["t8", "t2", "t4", "t6", "t7"]


def test_a_together_prefix_is_one_unit_in_collection_order_on_one_worker():
  ids = ["a", "shared[1]", "b", "shared[2]", "c", "big", "d", "e"]
  seconds = {"shared[1]": 60.0, "big": 70.0}
  order = ordering.longest_first(ids, ids, seconds, ("shared[",), workers=2)
  assert order[:4] == ["big", "a", "b", "c"]
  assert order[4:] == ["shared[1]", "shared[2]", "d", "e"]


def test_unknown_tests_one_worker_and_no_long_tests_keep_collection_order():
  ids = ["x", "y", "z"]
  assert ordering.longest_first(ids, ids, {"x": 9.0}, (), workers=1) == ids
  assert ordering.longest_first(ids, ids, {"gone": 9.0}, (), workers=2) == ids


def test_more_long_tests_than_a_run_holds_spill_into_the_next_run():
  ids = ["q", "l1", "l2", "l3", "l4"]
  seconds = {"l1": 4.0, "l2": 3.0, "l3": 2.0, "l4": 1.0}
  order = ordering.longest_first(ids, ids, seconds, (), workers=2)
  assert order == ["l1", "l4", "l2", "l3", "q"]  # worker 0: l1+l4, worker 1: l2+l3, then q


def test_the_committed_durations_load():
  seconds, together = ordering.load()
  assert len(seconds) >= 20 and all(s > 0 for s in seconds.values())
  assert all(key.startswith("tests/") and "::" in key for key in seconds)
  assert together and all(any(k.startswith(p) for k in seconds) for p in together)
