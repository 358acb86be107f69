"""The public API resolves, and imports run one way: experiments -> bench -> the rest -> jax."""

import ast
import pathlib

import pytest

import funcgrad

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "funcgrad"


def _imports(path: pathlib.Path) -> set[str]:
  names = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
      names.update(f"{node.module}.{alias.name}" for alias in node.names)
  return names


@pytest.mark.parametrize("name", funcgrad.__all__)
def test_every_public_name_resolves(name):
  assert getattr(funcgrad, name) is not None


def test_lazy_table_and_type_checking_imports_list_the_same_names():
  tree = ast.parse((PACKAGE / "__init__.py").read_text())
  checked = {alias.asname for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             for alias in node.names if alias.asname}
  assert checked == set(funcgrad.__all__)


def test_modules_outside_bench_never_import_the_runner():
  offenders = {}
  for path in PACKAGE.rglob("*.py"):
    relative = path.relative_to(PACKAGE)
    top_init = relative.name == "__init__.py" and len(relative.parts) == 1
    if relative.parts[0] in ("bench", "experiments") or top_init:
      continue
    bad = sorted(n for n in _imports(path) if n.startswith("funcgrad.bench"))
    if bad:
      offenders[str(relative)] = bad
  assert offenders == {}


def test_library_never_imports_the_scripts():
  offenders = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
               if p.relative_to(PACKAGE).parts[0] != "experiments" and p.name != "__main__.py"
               and any(n.startswith(("experiments", "funcgrad.experiments")) for n in _imports(p))]
  assert offenders == []


def test_the_repository_shims_only_run_the_packaged_scripts():
  from funcgrad.experiments import SCRIPTS  # noqa: PLC0415

  shims = sorted(p.stem for p in (ROOT / "experiments").glob("*.py") if p.stem != "__init__")
  assert shims == sorted(SCRIPTS)
  for name in shims:
    text = (ROOT / "experiments" / f"{name}.py").read_text()
    assert f'  launch("{name}")' in text and "import launch" in text, name


def test_private_jax_and_torch_apis_live_in_compat():
  offenders = []
  for path in PACKAGE.rglob("*.py"):
    if path.name in ("_compat.py", "compile_cache.py"):
      continue
    text = path.read_text()
    if "jax._src" in text or "._dynamo" in text:
      offenders.append(str(path.relative_to(ROOT)))
  assert offenders == []
