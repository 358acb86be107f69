"""Environment report (tutorial: sys.version, torch.__version__, torch.version.cuda, cudnn).

  python -m experiments.env_check [--format=text|json]
"""

import json

from absl import flags

from funcgrad.env import environment_report, format_report
from funcgrad.experiments import _cli

_FORMAT = flags.DEFINE_enum("format", "text", ["text", "json"], "Output format.")


def main(argv: list[str]) -> None:
  del argv
  report = environment_report()
  if _FORMAT.value == "json":
    print(json.dumps(report.to_dict(), indent=2))
  else:
    print(format_report(report))


if __name__ == "__main__":
  _cli.run(main)
