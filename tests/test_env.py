import json
import sys

import jax

from funcgrad import environment_report, format_report


def test_report_fields():
  report = environment_report()
  assert report.python == sys.version.split()[0]
  assert report.packages["jax"] == jax.__version__
  assert set(report.packages) == {"jax", "jaxlib", "numpy", "optax"}
  assert "cpu" in report.platforms
  assert report.default_backend == jax.default_backend()
  assert report.x64_enabled is False
  assert len(report.devices) >= len(jax.devices())
  cpu = next(d for d in report.devices if d.platform == "cpu")
  assert cpu.process_index == 0 and cpu.compute_capability is None
  if "gpu" not in report.platforms:
    assert report.cuda is None


def test_report_is_json_and_text():
  report = environment_report()
  data = json.loads(json.dumps(report.to_dict()))
  assert data["devices"][0]["platform"] in report.platforms
  text = format_report(report)
  assert f"jax             {jax.__version__}" in text
  assert "default backend" in text
