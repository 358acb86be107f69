"""Run by test_allocator: re-exec under an allocator, then report what is in use."""

import json
import os
import sys

from funcgrad import allocator

if __name__ == "__main__":
  allocator.reexec_with(sys.argv[1])
  print(json.dumps([allocator.in_use(), os.environ.get("LD_PRELOAD", "")]))
