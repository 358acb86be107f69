"""The README's two set-up commands are the ones CI runs."""

import re

from tests.helpers import ROOT


def _setup_commands() -> list[str]:
  readme = (ROOT / "README.md").read_text()
  section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
  return re.findall(r"```bash\n(.+?)\n```", section)


def test_two_setup_commands():
  main, tests = _setup_commands()
  assert main.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install -e ")
  assert main.endswith("&& python -m experiments.compare")
  assert tests.endswith("&& python -m pytest")


def test_ci_runs_the_readme_test_command():
  _, tests = _setup_commands()
  install = re.search(r"(pip install -e .+?) && python -m pytest$", tests).group(1)
  ci = (ROOT / ".ci" / "run").read_text()
  assert "python3 -m venv .venv" in ci
  assert f"\n{install}\n" in ci
  assert "\npython -m pytest\n" in ci
