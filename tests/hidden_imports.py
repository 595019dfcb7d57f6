"""A PYTHONPATH folder whose sitecustomize makes some top-level packages fail to import in
every Python process started with it: how tests run a script as on a machine without them
(TensorFlow and its kin on the lent GPU machine, Keras for the epoch row's message).

  env = dict(os.environ, PYTHONPATH=hiding_folder(tmp_path / 'hide', ['keras'], 'test_x.py'))
"""

from pathlib import Path

SITECUSTOMIZE = '''
import importlib.abc
import sys


class _Hidden(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in {names!r}:
      raise ImportError(f'{{name}} is hidden ({test})')
    return None


sys.meta_path.insert(0, _Hidden())
'''


def hiding_folder(folder: Path, names, test: str) -> str:
  """Writes `folder`/sitecustomize.py hiding the packages `names` (an import of one raises
  ImportError '<name> is hidden (<test>)'); the folder, to put first on PYTHONPATH."""
  folder.mkdir(parents=True, exist_ok=True)
  (folder / 'sitecustomize.py').write_text(
      SITECUSTOMIZE.format(names=frozenset(names), test=test))
  return str(folder)
