"""A launcher's start-up (launch/jax_startup.py): the platform line, the warning when
nvidia-smi finds a GPU that JAX does not use, and the persistent compilation cache
(the XLA flags it adds: tests/test_xla_flags.py)."""

import logging
import os
from pathlib import Path
import subprocess
import sys

import jax
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'launch'))

import jax_startup  # noqa: E402

CACHE_OPTIONS = ('jax_compilation_cache_dir', 'jax_enable_compilation_cache',
                 'jax_persistent_cache_min_compile_time_secs')


def _fake_nvidia_smi(folder: Path, script: str) -> Path:
  """A folder holding only an `nvidia-smi` shell script with `script` as its body."""
  folder.mkdir(exist_ok=True)
  tool = folder / 'nvidia-smi'
  tool.write_text('#!/bin/sh\n' + script + '\n')
  tool.chmod(0o755)
  return folder


def _lines(caplog, level):
  return [r.getMessage() for r in caplog.records if r.levelno == level]


@pytest.fixture
def jax_cache_config():
  """JAX's cache options as the session set them, put back after the test."""
  saved = {name: getattr(jax.config, name) for name in CACHE_OPTIONS}
  yield
  for name, value in saved.items():
    jax.config.update(name, value)


def test_platform_line_names_platform_devices_and_processes(caplog, tmp_path, monkeypatch):
  monkeypatch.setenv('PATH', str(tmp_path))  # no nvidia-smi
  with caplog.at_level(logging.INFO, logger='absl'):
    jax_startup.log_platform()
  count = jax.device_count()
  devices = '1 device (cpu)' if count == 1 else f'{count} devices ({count} x cpu)'
  assert _lines(caplog, logging.INFO) == [
      f'JAX {jax.__version__} on cpu: {devices}, process 1 of 1']
  assert _lines(caplog, logging.WARNING) == []


@pytest.mark.parametrize('driver,extra', [('580.159.03', 'cuda13'), ('550.54.15', 'cuda12')])
def test_a_gpu_jax_does_not_use_is_one_warning_with_the_fix(caplog, tmp_path, monkeypatch,
                                                           driver, extra):
  bin_dir = _fake_nvidia_smi(tmp_path / 'bin', f"echo 'NVIDIA H200, {driver}'")
  monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
  monkeypatch.delenv('JAX_PLATFORMS', raising=False)
  monkeypatch.setattr(jax_startup, '_cuda_plugins', lambda: [])
  with caplog.at_level(logging.INFO, logger='absl'):
    jax_startup.log_platform()
  assert len(_lines(caplog, logging.INFO)) == 1
  assert _lines(caplog, logging.WARNING) == [
      f'nvidia-smi finds 1 GPU (NVIDIA H200, driver {driver}) but JAX runs on the CPU: '
      f"JAX's CUDA build is not installed; pip install -e '.[{extra}]' (or make clean setup)"]


def test_jax_platforms_that_keeps_jax_on_the_cpu_is_named(caplog, tmp_path, monkeypatch):
  bin_dir = _fake_nvidia_smi(tmp_path / 'bin', "echo 'NVIDIA H200, 580.159.03'")
  monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  with caplog.at_level(logging.WARNING, logger='absl'):
    jax_startup.log_platform()
  [warning] = _lines(caplog, logging.WARNING)
  assert warning.endswith('JAX_PLATFORMS=cpu keeps it there; unset it to use the GPU')


@pytest.mark.parametrize('script', ['exit 0', "echo 'NVIDIA-SMI has failed'; exit 9",
                                    'echo No devices were found'])
def test_no_working_nvidia_smi_means_no_warning(caplog, tmp_path, monkeypatch, script):
  bin_dir = _fake_nvidia_smi(tmp_path / 'bin', script)
  monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
  monkeypatch.setenv('XLA_FLAGS', os.environ.get('XLA_FLAGS', ''))  # start() adds to it
  with caplog.at_level(logging.INFO, logger='absl'):
    jax_startup.start()
  assert _lines(caplog, logging.WARNING) == []


def test_cache_goes_to_skinjax_cache_dir(caplog, tmp_path, jax_cache_config):
  jax.config.update('jax_compilation_cache_dir', None)
  folder = tmp_path / 'cache'
  with caplog.at_level(logging.INFO, logger='absl'):
    assert jax_startup.enable_compilation_cache({'SKINJAX_CACHE_DIR': str(folder)}) == str(folder)
  assert folder.is_dir() and jax.config.jax_compilation_cache_dir == str(folder)
  assert jax.config.jax_persistent_cache_min_compile_time_secs == jax_startup.MIN_COMPILE_SECONDS
  assert _lines(caplog, logging.INFO) == [
      f'compilation cache: {folder} (SKINJAX_COMPILATION_CACHE=0 turns it off)']


def test_an_unwritable_cache_folder_is_one_warning_and_no_cache(caplog, tmp_path,
                                                                 jax_cache_config):
  jax.config.update('jax_compilation_cache_dir', None)
  (tmp_path / 'a_file').write_text('')  # a folder under a file fails even as root
  folder = tmp_path / 'a_file' / 'jax'
  with caplog.at_level(logging.INFO, logger='absl'):
    assert jax_startup.enable_compilation_cache({'SKINJAX_CACHE_DIR': str(folder)}) is None
  [warning] = _lines(caplog, logging.WARNING)
  assert warning.startswith(f'compilation cache: off ({folder} cannot be written: ')
  assert not jax.config.jax_compilation_cache_dir


def test_skinjax_compilation_cache_0_turns_it_off(caplog, jax_cache_config):
  with caplog.at_level(logging.INFO, logger='absl'):
    assert jax_startup.enable_compilation_cache({'SKINJAX_COMPILATION_CACHE': '0'}) is None
  assert not jax.config.jax_enable_compilation_cache
  assert _lines(caplog, logging.INFO) == ['compilation cache: off (SKINJAX_COMPILATION_CACHE=0)']


def test_a_second_process_reads_what_the_first_compiled(tmp_path):
  folder = tmp_path / 'cache'
  env = {k: v for k, v in os.environ.items() if not k.startswith('JAX_COMPILATION_CACHE')}
  env.update(SKINJAX_CACHE_DIR=str(folder), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  program = ('import sys; sys.path.insert(0, "launch"); import jax_startup, jax; '
             'jax_startup.start(); '
             'jax.jit(lambda x: (x * 2.0).sum())(jax.numpy.ones(7)).block_until_ready(); '
             'print(len(list(__import__("pathlib").Path(sys.argv[1]).iterdir())))')
  counts = [subprocess.run([sys.executable, '-c', program, str(folder)], cwd=REPO, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
            for _ in range(2)]
  assert int(counts[0]) > 0 and counts[1] == counts[0]  # the second wrote nothing new
