"""`make setup`'s choice of JAX build (tools/accelerator_extra.sh): CUDA 13 for a driver of
580 or newer, CUDA 12 below, the CPU build without a working nvidia-smi; one line each."""

import os
from pathlib import Path
import subprocess

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / 'tools' / 'accelerator_extra.sh'


def _choose(tmp_path, nvidia_smi: str | None, **env):
  """(stdout, stderr) of the script with a PATH holding only `nvidia-smi` (when given)
  beside the shell's own tools."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir(exist_ok=True)
  if nvidia_smi is not None:
    tool = bin_dir / 'nvidia-smi'
    tool.write_text('#!/bin/sh\n' + nvidia_smi + '\n')
    tool.chmod(0o755)
  environ = {k: v for k, v in os.environ.items() if k != 'SKINJAX_ACCELERATOR'}
  environ.update(PATH=f'{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin', **env)
  done = subprocess.run(['sh', str(SCRIPT), 'test'], capture_output=True, text=True,
                        env=environ, check=True)
  return done.stdout.strip(), done.stderr.strip()


@pytest.mark.parametrize('nvidia_smi,extras', [
    ('echo 580.159.03', 'test,cuda13'),
    ('echo 550.54.15', 'test,cuda12'),
    (None, 'test'),
    ("echo 'NVIDIA-SMI has failed'; exit 9", 'test'),
    ('echo 580.159.03; exit 6', 'test'),
])
def test_the_driver_picks_the_build(tmp_path, nvidia_smi, extras):
  chosen, said = _choose(tmp_path, nvidia_smi)
  assert chosen == extras
  assert len(said.splitlines()) == 1 and said.endswith(f'installing .[{extras}]'
                                                       + ('' if 'cuda' in extras
                                                          else ' (CPU-only JAX)'))


def test_skinjax_accelerator_overrides_the_guess(tmp_path):
  assert _choose(tmp_path, 'echo 580.159.03', SKINJAX_ACCELERATOR='tpu')[0] == 'test,tpu'
  assert _choose(tmp_path, 'echo 580.159.03', SKINJAX_ACCELERATOR='cpu')[0] == 'test'
