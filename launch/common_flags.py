"""The launchers' command lines: flags they share, parsing that ends any mistake in one
line, and several processes.

Each launcher defines its flags on a fresh `absl.flags.FlagValues` (`define`), so its
command line can be parsed and checked in-process as often as a test likes (`parse`). A
run's own choices are config fields, set only as `--config.<field>`; no flag shadows one.
A mistake ends the launcher with one `error:` line on stderr and exit status 2 (`fail`),
before anything is built or written.
"""

import dataclasses
import difflib
import importlib.util
import os
import re
import sys
from typing import Callable

from absl import app, flags


class CommandLineError(ValueError):
  """A flag that cannot work; the message is one line naming it."""


@dataclasses.dataclass(frozen=True)
class Processes:
  """The multi-process flags (skinjax.train.multihost)."""

  multihost: bool
  coordinator_address: str | None
  num_processes: int | None
  process_id: int | None


def define_common(values: flags.FlagValues):
  """--workdir, --data_dir, --manual_dir and the multi-process flags."""
  flags.DEFINE_string('workdir', None, 'Run directory: checkpoints, logs, report.',
                      flag_values=values)
  flags.DEFINE_string('data_dir', None, 'TFDS data directory (default: TFDS\'s).',
                      flag_values=values)
  flags.DEFINE_string('manual_dir', None, 'The dataset download, in its public layout.',
                      flag_values=values)
  # --multihost alone lets JAX find the rest (SLURM, Open MPI, Kubernetes, Cloud TPU,
  # JAX_COORDINATOR_ADDRESS and friends).
  flags.DEFINE_bool('multihost', False, 'Join a multi-process run via '
                    'jax.distributed.initialize.', flag_values=values)
  flags.DEFINE_string('coordinator_address', None, 'host:port of process 0\'s coordinator '
                      '(multi-process).', flag_values=values)
  flags.DEFINE_integer('num_processes', None, 'Processes in the run.', lower_bound=1,
                       flag_values=values)
  flags.DEFINE_integer('process_id', None, 'This process\'s index, 0-based.', lower_bound=0,
                       flag_values=values)


def processes(values: flags.FlagValues) -> Processes:
  if (values.process_id is not None and values.num_processes is not None
      and values.process_id >= values.num_processes):
    raise CommandLineError(f'--process_id={values.process_id}: expected 0..'
                           f'{values.num_processes - 1} (--num_processes='
                           f'{values.num_processes})')
  return Processes(values.multihost, values.coordinator_address, values.num_processes,
                   values.process_id)


def initialize_processes(given: Processes):
  """jax.distributed.initialize when the multi-process flags ask for it; call first."""
  from skinjax.train import multihost
  multihost.initialize(multihost=given.multihost,
                       coordinator_address=given.coordinator_address,
                       num_processes=given.num_processes, process_id=given.process_id)


def parse(argv: list[str], define: Callable[[flags.FlagValues, list[str]], None], *,
          required: tuple[str, ...] = (), positional: bool = False) -> tuple:
  """(flag values, positional arguments) of `argv` for the flags `define` puts on a fresh
  FlagValues; CommandLineError (one line naming the flag) for any mistake."""
  values = flags.FlagValues()
  define(values, argv)
  try:
    rest = values(argv)[1:]
  except flags.UnrecognizedFlagError as error:
    raise CommandLineError(_unknown_flag(error.flagname, values)) from None
  except flags.Error as error:
    raise CommandLineError(_flag_problem(str(error))) from None
  except Exception as error:  # config_flags' own, for an override it cannot apply
    raise CommandLineError(_failed_override(argv, define, error)) from None
  for name in required:
    if not values[name].value:
      raise CommandLineError(f'--{name}: required')
  if rest and not positional:
    raise CommandLineError(f'unexpected arguments {rest}')
  return values, rest


def _unknown_flag(name: str, values: flags.FlagValues) -> str:
  from skinjax.train.spec import RunSpec
  fields = [field.name for field in dataclasses.fields(RunSpec)]
  if name in fields:
    return f'--{name}: not a flag; a run\'s field is set as --config.{name}'
  known = [flag for flag in values if not flag.startswith('config.')]
  close = difflib.get_close_matches(name, known, n=1)
  return f'--{name}: unknown flag; ' + (f'did you mean --{close[0]}?' if close else
                                         f'known: --{", --".join(sorted(known))}')


def _failed_override(argv, define, error) -> str:
  """Names the `--config.<path>=...` override that `error` came from: the first whose
  addition to those before it fails."""
  config = [arg for arg in argv[1:] if arg.startswith('--config=')][-1:]
  given = []
  for arg in argv[1:]:
    if not arg.startswith('--config.'):
      continue
    given.append(arg)
    alone = [argv[0], *config, *given]
    values = flags.FlagValues()
    define(values, alone)
    try:
      values(alone)
    except Exception as single:  # noqa: BLE001 - this is the one that fails
      what = {IndexError: 'no such list index in the config',
              KeyError: 'no such field in the config',
              AttributeError: 'no such field in the config'}.get(type(single))
      return f'{arg}: {what or " ".join(str(single).split())[:200]}'
  return f'the command line: {type(error).__name__}: {" ".join(str(error).split())[:200]}'


def _flag_problem(message: str) -> str:
  """absl's message, in one line, as `--flag=value: what is wrong`."""
  line = ' '.join(message.split())
  if line.startswith('flag '):
    line = line[len('flag '):]
  for found, said in (('invalid literal for int()', 'expected an integer'),
                      ('could not convert string to float', 'expected a number'),
                      ('Non-boolean argument to boolean flag', 'expected true or false')):
    if found in line:
      return f'{line.split(": ", 1)[0]}: {said}'
  unsupported = re.match(r'Type <class \'(\w+)\'> of field (config\.\S+) is not supported', line)
  if unsupported:  # config_flags' word for a list field
    kind, path = unsupported.groups()
    return (f'--{path}: a {kind} cannot be given whole on the command line; set its items '
            f'(e.g. --{path}[0].epochs=5) or the config file')
  if line.startswith('--'):
    return line
  named = re.search(r'--[\w.\[\]]+', line)  # put the flag it names first
  return f'{named.group(0)}: {line}' if named else f'the command line: {line}'


def config_overrides(values: flags.FlagValues, name: str = 'config') -> dict:
  """The `--config.<path>` values given on the command line, as config_flags read them."""
  from ml_collections import config_flags
  return config_flags.get_override_values(values[name])


# absl's help flags live on its global FlagValues, which the launchers do not parse.
HELP_FLAGS = ('-h', '-?', '--help', '--helpshort', '--helpfull')


def exit_on_help(argv: list[str], define: Callable):
  """With a help flag in `argv`: prints the launcher's docstring and its flags, exits 0."""
  if not any(arg in HELP_FLAGS for arg in argv[1:]):
    return
  values = flags.FlagValues()
  define(values, argv)
  doc = (sys.modules['__main__'].__doc__ or '').strip()
  print(f'{doc}\n\nflags:\n{values.get_help(include_special_flags=False)}'.strip())
  sys.exit(0)


def run(main: Callable, define: Callable, **parse_options):
  """The `__main__` entry: parses sys.argv with `define`'s flags (a mistake: one line and
  exit 2), then runs main(flag values, positional arguments) under absl."""
  exit_on_help(sys.argv, define)
  try:
    values, rest = parse(sys.argv, define, **parse_options)
  except CommandLineError as error:
    fail(str(error))
  # absl's own flags (logging) at their defaults; absl then sets up logging and runs main.
  app.run(lambda _: main(values, rest), argv=sys.argv[:1])


def data_dir(given: str | None) -> str:
  """--data_dir, or TFDS' default data directory."""
  if given:
    return given
  import tensorflow_datasets as tfds
  return tfds.core.constants.DATA_DIR


def checkpoint_step(value: str):
  """--step: 'best', 'latest' or a step number (an int); CommandLineError otherwise."""
  if value in ('best', 'latest'):
    return value
  if not value.isdigit():
    raise CommandLineError(f"--step={value}: expected 'best', 'latest' or a step number")
  return int(value)


def fail(message: str):
  """Ends the launcher with one line on stderr and exit status 2."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def quiet_orbax():
  """Orbax logs every step of every save at INFO."""
  from absl import logging
  logging.get_absl_handler().addFilter(lambda record: 'orbax' not in record.pathname)


def load_config(name: str):
  """The get_config() ConfigDict of launch/configs/<name>.py."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs', f'{name}.py')
  return load_config_file(path)


def load_config_file(path: str, flag: str = '--config'):
  """get_config() of a config file; CommandLineError naming the file when it cannot be
  loaded (missing, not Python, no get_config, a get_config that fails)."""
  if not os.path.isfile(path):
    raise CommandLineError(f'{flag}={path}: no such file')
  spec = importlib.util.spec_from_file_location(
      f'skinjax_config_{os.path.splitext(os.path.basename(path))[0]}', path)
  try:
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()
  except Exception as error:  # a config file is the user's Python: name what went wrong
    raise CommandLineError(f'{flag}={path}: cannot load it as a config file '
                           f'({type(error).__name__}: {error})') from None
