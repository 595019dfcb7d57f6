"""The import contract (pyproject's [tool.importlinter]) names every package and module of
skinjax, holds for the code as it is, and fails when a floor imports from above it."""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name('lint-imports')


def contract_layers() -> list[str]:
  config = tomllib.loads((REPO / 'pyproject.toml').read_text())['tool']['importlinter']
  (contract,) = config['contracts']
  return [name.strip() for layer in contract['layers'] for name in layer.split('|')]


def test_the_contract_names_every_package_and_module_of_skinjax():
  entries = {f'skinjax.{path.stem}' for path in (REPO / 'skinjax').iterdir()
             if (path.suffix == '.py' and path.name != '__init__.py')
             or (path / '__init__.py').exists()}
  assert sorted(contract_layers()) == sorted(entries)


def lint(root: Path):
  env = dict(os.environ, PYTHONPATH=str(root))
  return subprocess.run([str(LINT), '--no-logo', '--no-cache', str(root / 'pyproject.toml')],
                        capture_output=True, text=True, cwd=root, env=env, timeout=300)


def test_the_code_keeps_the_contract_and_an_upward_import_breaks_it(tmp_path):
  shutil.copytree(REPO / 'skinjax', tmp_path / 'skinjax',
                  ignore=shutil.ignore_patterns('__pycache__'))
  shutil.copy(REPO / 'pyproject.toml', tmp_path / 'pyproject.toml')
  kept = lint(tmp_path)
  assert kept.returncode == 0 and 'skinjax floors KEPT' in kept.stdout, kept.stdout[-2000:]
  models = tmp_path / 'skinjax' / 'models' / 'unet.py'
  models.write_text(models.read_text() + '\nfrom skinjax.train import trainer  # noqa\n')
  broken = lint(tmp_path)
  assert broken.returncode == 1 and 'skinjax floors BROKEN' in broken.stdout
  assert 'skinjax.models.unet -> skinjax.train.trainer' in broken.stdout, broken.stdout[-2000:]
