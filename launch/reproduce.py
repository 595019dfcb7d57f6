r"""Runs the papers' tables (launch/reproduce_plan.py) at one scale and writes them into
RESULTS.md: `make reproduce` (SCALE=cpu), `make reproduce SCALE=paper`.

  python launch/reproduce.py --scale=cpu --data_root=../shared/data
  python launch/reproduce.py --scale=cpu --only='dcn_paper_*' --dry_run

Each run is launch/train.py (then launch/evaluate.py for its cross-dataset evaluations), a
process of its own, in <workdir>/<run>/. A finished run leaves a summary,
<summaries>/<run>.json (its scores, the commands, seed, machine and wall time), which is
what the tables are made from: a rerun skips the runs that have one for the same command,
resumes an interrupted run from its last checkpoint, and reruns a run whose row changed.
The tables go between the markers `<!-- reproduce:<scale>:<table> begin/end -->` of
--results_file; the text around them is left as it is. SIGINT or SIGTERM stops the run at
hand at its next checkpoint; run the command again to continue.
"""

import dataclasses
import fnmatch
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from importlib import metadata

from absl import flags

import common_flags
import reproduce_plan
import reproduce_tables
from skinjax.data import synthetic
from skinjax.train import workdir as workdir_lib
from skinjax.train.lock import WorkdirLock
from skinjax.train.metric_writer import read_history
from skinjax.train.spec import ConfigError

LAUNCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(LAUNCH)


def define(values, argv):
  del argv
  flags.DEFINE_enum('scale', 'cpu', list(reproduce_plan.SCALES), 'Which settings: tiny '
                    '(synthetic data, CI), cpu (2 cores), paper (an accelerator).',
                    flag_values=values)
  flags.DEFINE_string('data_root', None, 'Folder holding the downloads (HAM10000/, PH2/ or '
                      'PH2-sample/, ISIC9/); default ../shared/data, and for --scale=tiny '
                      'synthetic layouts written into --workdir.', flag_values=values)
  flags.DEFINE_string('workdir', None, 'Where the runs train (default runs/reproduce/'
                      '<scale>); checkpoints stay here, summaries go to --summaries.',
                      flag_values=values)
  flags.DEFINE_string('summaries', None, "Where each finished run's summary goes (default "
                      'results/reproduce/<scale>, kept in git; tiny: <workdir>/summaries).',
                      flag_values=values)
  flags.DEFINE_string('results_file', None, 'The markdown file whose tables are rewritten '
                      '(default RESULTS.md; tiny: <workdir>/RESULTS.md).', flag_values=values)
  flags.DEFINE_list('only', [], 'Run only these runs (names or shell patterns, e.g. '
                    "'dcn_paper_*'); the tables still show every summary.",
                    flag_values=values)
  flags.DEFINE_bool('dry_run', False, 'Print each run, its state and its command; run '
                    'nothing, write nothing.', flag_values=values)
  flags.DEFINE_bool('tables_only', False, 'Rewrite the tables from the summaries; run '
                    'nothing.', flag_values=values)


def repo_path(path: str) -> str:
  """`path` as the commands show it: relative to the repository (they run there), or
  absolute when it lies far outside."""
  relative = os.path.relpath(os.path.abspath(path), REPO)
  return os.path.abspath(path) if relative.startswith(os.path.join('..', '..')) else relative


def paths(values) -> dict:
  """The flags' folders and files: given ones from the current folder, defaults in the
  repository."""
  scale, tiny = values.scale, values.scale == 'tiny'
  workdir = values.workdir or os.path.join(REPO, 'runs', 'reproduce', scale)
  return {
      'workdir': workdir,
      'summaries': values.summaries or (os.path.join(workdir, 'summaries') if tiny else
                                        os.path.join(REPO, 'results', 'reproduce', scale)),
      'results_file': values.results_file or (os.path.join(workdir, 'RESULTS.md') if tiny
                                              else os.path.join(REPO, 'RESULTS.md')),
      'data_root': values.data_root or (None if tiny else
                                        os.path.join(REPO, '..', 'shared', 'data')),
  }


def selected(plan, patterns):
  """The runs --only names, with the runs they start from (kept in the plan's order)."""
  if not patterns:
    return plan
  unmatched = [p for p in patterns if not any(fnmatch.fnmatch(r.name, p) for r in plan)]
  if unmatched:
    raise common_flags.CommandLineError(
        f'--only={",".join(patterns)}: {", ".join(unmatched)} matches no run; the runs: '
        f'{", ".join(run.name for run in plan)}')
  chosen = {run.name for run in plan if any(fnmatch.fnmatch(run.name, p) for p in patterns)}
  by_name = {run.name: run for run in plan}
  pending = list(chosen)
  while pending:
    for needed in by_name[pending.pop()].needs:
      if needed not in chosen:
        chosen.add(needed)
        pending.append(needed)
  return [run for run in plan if run.name in chosen]


def find_folder(data_root: str, candidates, run_name: str) -> str:
  for name in candidates:
    if os.path.isdir(os.path.join(data_root, name)):
      return os.path.join(data_root, name)
  raise common_flags.CommandLineError(
      f'--data_root={data_root}: no {" or ".join(c + "/" for c in candidates)} folder, '
      f'which {run_name} reads')


@dataclasses.dataclass(frozen=True)
class Placed:
  """A run of the plan with its downloads found on this machine."""

  run: reproduce_plan.Run
  manual_dir: str
  evaluation_dirs: tuple  # (Evaluation, its download folder) per evaluation
  overlap_dir: str | None  # --overlap_manual_dir, for a run that leaves another set out

  @property
  def name(self) -> str:
    return self.run.name


def commands(placed: Placed, places) -> list[list[str]]:
  """The launcher commands of a run, as argument lists starting at the script."""
  run = placed.run
  workdir = os.path.join(places['workdir'], run.name)
  arguments = run.arguments()
  for needed in run.needs:  # a backbone another run exports
    arguments = [argument.replace(reproduce_plan.backbone_of(needed), backbone_dir(
        places, needed)) for argument in arguments]
  overlap = [f'--overlap_manual_dir={placed.overlap_dir}'] if placed.overlap_dir else []
  train = ['launch/train.py', f'--config=launch/configs/{run.config}.py',
           f'--workdir={workdir}', f'--manual_dir={placed.manual_dir}',
           f'--data_dir={places["tfds"]}', *overlap, *arguments]
  evaluations = []
  for evaluation, manual_dir in placed.evaluation_dirs:
    target = []
    if evaluation.crop_with:
      target.append(f'--crop_with={os.path.join(places["workdir"], evaluation.crop_with)}')
    if evaluation.dataset is not None:
      target += [f'--dataset={evaluation.dataset}', f'--manual_dir={manual_dir}']
    if evaluation.kmeans:
      target.append('--kmeans')
    evaluations.append(['launch/evaluate.py', f'--workdir={workdir}', *target,
                        f'--split={evaluation.split}', f'--data_dir={places["tfds"]}'])
  export = ([['launch/export_backbone.py', f'--workdir={workdir}',
              f'--output={backbone_dir(places, run.name)}']] if run.export_backbone else [])
  return [train, *evaluations, *export]


def backbone_dir(places, run_name: str) -> str:
  return os.path.join(places['workdir'], run_name, reproduce_plan.BACKBONE)


def shown(command) -> str:
  return 'python ' + ' '.join(shlex.quote(part) for part in command)


def load_summary(path: str) -> dict | None:
  """The summary at `path`, or None when absent or unreadable (a damaged one is rerun)."""
  try:
    with open(path) as file:
      summary = json.load(file)
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as error:
    print(f'reproduce: {path} is unreadable ({error}); its run is done again',
          file=sys.stderr)
    return None
  return summary if isinstance(summary, dict) and 'identity' in summary else None


def machine() -> dict:
  model = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as file:
      names = [line.split(':', 1)[1].strip() for line in file if line.startswith('model name')]
    model = names[0] if names else model
  except OSError:
    pass
  return {'cpu': model, 'cpu_cores': os.cpu_count(), 'python': platform.python_version(),
          'jax': metadata.version('jax'), 'jaxlib': metadata.version('jaxlib')}


class Stopped(Exception):
  """The launcher stopped at a signal, its checkpoint written."""

  def __init__(self, status: int, seconds: float):
    super().__init__(status)
    self.status, self.seconds = status, seconds


class Failed(Exception):
  def __init__(self, status: int, seconds: float):
    super().__init__(status)
    self.status, self.seconds = status, seconds


def execute(command, log_path) -> float:
  """Runs one launcher command, its output shown and appended to log_path; the seconds it
  took. SIGINT and SIGTERM are passed on to it, so that it stops at a checkpoint."""
  with open(log_path, 'ab') as log:
    log.write(f'# {time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}: '
              f'{shown(command)}\n'.encode())
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, *command], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)

    def forward(signum, _):
      child.send_signal(signum)
    previous = {signum: signal.signal(signum, forward)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
      while chunk := os.read(child.stdout.fileno(), 1 << 16):
        log.write(chunk)
        log.flush()  # so that `tail -f` on the log follows the run
        sys.stderr.buffer.write(chunk)
        sys.stderr.flush()
      status = child.wait()
    finally:
      for signum, handler in previous.items():
        signal.signal(signum, handler)
  seconds = time.perf_counter() - start
  if status in (130, 143) or status in (-signal.SIGINT, -signal.SIGTERM):
    raise Stopped(status if status > 0 else 128 - status, seconds)
  if status != 0:
    raise Failed(status, seconds)
  return seconds


def summarize(placed: Placed, places, command_lines, wall_s) -> dict:
  run = placed.run
  workdir = os.path.join(places['workdir'], run.name)
  reports = {}
  for target in ['test'] + [e.report for e, _ in placed.evaluation_dirs]:
    with open(os.path.join(workdir_lib.report_dir(workdir, target), 'report.json')) as file:
      reports[target] = json.load(file)
  scored = {target: {'examples': report['examples'], 'metrics': report['metrics'],
                     'confusion_matrix': report.get('confusion_matrix'),
                     'crops': report.get('crops'), 'kmeans': report.get('kmeans')}
            for target, report in reports.items()}
  history = read_history(workdir)
  with open(os.path.join(workdir, 'config.json')) as file:
    description = json.load(file)
  figures = keep_figures(run, reports['test'], places['figures'])
  best = best_epoch(history, reports['test'].get('checkpoint_step'))
  return {
      'name': run.name, 'table': run.table, 'row': run.row, 'seed': run.seed,
      'scale': places['scale'], 'identity': identity(run), 'commands': command_lines,
      'scores': scored,
      'class_names': description.get('class_names'),
      'epochs': len(history),
      'last_epoch_train': history[-1].get('train', {}) if history else {},
      'best_epoch': best,  # the epoch the best checkpoint is of, and its validation scores
      'left_out': description.get('left_out'),
      'wall_s': round(wall_s, 1),
      'finished': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
      'machine': places['machine'], 'figures': figures,
  }


def keep_new_figures(placed: Placed, places):
  """Adds to a done run's summary the figures KEPT_FIGURES names that it lacks, where its
  workdir's test report has them (a figure added to the list after the run finished)."""
  path = os.path.join(places['summaries'], f'{placed.name}.json')
  summary = load_summary(path)
  kept = summary.get('figures', {})
  try:
    with open(os.path.join(workdir_lib.report_dir(os.path.join(places['workdir'], placed.name),
                                                  'test'), 'report.json')) as file:
      report = json.load(file)
  except (OSError, ValueError):
    return  # no workdir here (another checkout's summary): nothing to add
  figures = keep_figures(placed.run, report, places['figures'], only=set(KEPT_FIGURES) - set(kept))
  if figures:
    merged = {**kept, **figures}
    summary['figures'] = {name: merged[name] for name in KEPT_FIGURES if name in merged}
    write_json(path, summary)


def best_epoch(history, checkpoint_step) -> dict | None:
  """{'epoch', 'step', 'validation'} of the epoch the scored checkpoint ends."""
  for record in history:
    if record.get('step') == checkpoint_step:
      return {key: record.get(key) for key in ('epoch', 'step', 'phase', 'validation')}
  return None


# The report figures a summary keeps beside it (40-160 kB each), where the report has them.
KEPT_FIGURES = ('confusion_matrix', 'training_curves', 'predictions', 'gradcam',
                'segmentation_overlays')


def keep_figures(run, report: dict, folder: str, only=KEPT_FIGURES) -> dict:
  """Copies the test report's main figures (those of `only`) to `folder` as
  <run>_<figure>.png; their paths."""
  kept = {}
  for name in (name for name in KEPT_FIGURES if name in only):
    source = report.get('figures', {}).get(name)
    if source and os.path.exists(source):
      os.makedirs(folder, exist_ok=True)
      target = os.path.join(folder, f'{run.name}_{name}.png')
      shutil.copyfile(source, f'{target}.tmp')
      os.replace(f'{target}.tmp', target)
      kept[name] = target
  return kept


def write_json(path: str, value):
  """Written whole or not at all (a temporary file, then renamed)."""
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  temporary = f'{path}.tmp-{os.getpid()}'
  with open(temporary, 'w') as file:
    json.dump(value, file, indent=1)
    file.write('\n')
  os.replace(temporary, path)


def training_identity(run: reproduce_plan.Run) -> list:
  """What a run trains: its config, overrides and seed (not where its files live, so that
  another checkout or data root reuses a summary)."""
  return [run.config, *run.arguments()]


def identity(run: reproduce_plan.Run) -> list:
  """What a run computes: its training and then its evaluations."""
  return training_identity(run) + [e.identity for e in run.evaluations]


TRAINING_RECORD = 'reproduce_training.json'  # in a run's workdir: what it trains


def recorded_training(placed: Placed, places) -> list | None:
  """The training identity the run's workdir was started with (None: none recorded)."""
  try:
    with open(os.path.join(places['workdir'], placed.name, TRAINING_RECORD)) as file:
      return json.load(file)
  except (OSError, ValueError):
    return None


def state_of(placed: Placed, places) -> str:
  """'done' (a summary of this run), 'changed' (a summary, or a workdir, of another run of
  that name: the row changed), 'interrupted' (checkpoints, no summary) or 'to run'."""
  summary = load_summary(os.path.join(places['summaries'], f'{placed.name}.json'))
  if summary is not None:
    return 'done' if summary.get('identity') == identity(placed.run) else 'changed'
  if os.path.isdir(os.path.join(places['workdir'], placed.name, 'checkpoints')):
    recorded = recorded_training(placed, places)
    return 'interrupted' if recorded in (None, training_identity(placed.run)) else 'changed'
  return 'to run'


def trains_the_same(placed: Placed, places) -> bool:
  """Whether the run's workdir (or, without a record there, its old summary) trained what
  the plan trains now."""
  trained = training_identity(placed.run)
  recorded = recorded_training(placed, places)
  if recorded is not None:
    return recorded == trained
  summary = load_summary(os.path.join(places['summaries'], f'{placed.name}.json'))
  return summary is not None and summary['identity'][:len(trained)] == trained


def prepare_places(values) -> dict:
  given = paths(values)
  if given['data_root'] is not None and not os.path.isdir(given['data_root']):
    raise common_flags.CommandLineError(f'--data_root={given["data_root"]}: no such folder')
  places = {key: value if value is None else repo_path(value) for key, value in given.items()}
  # The tables' file is the user's own, not a command's argument: named as a whole path in
  # messages, whichever folder they ran from.
  places.update(scale=values.scale, tfds=os.path.join(places['workdir'], 'tfds'),
                results_file=os.path.abspath(given['results_file']),
                figures=os.path.join(places['summaries'], 'figures'))
  for flag in ('workdir', 'summaries'):
    if os.path.exists(given[flag]) and not os.path.isdir(given[flag]):
      raise common_flags.CommandLineError(f'--{flag}={given[flag]}: a file, not a folder')
  results = given['results_file']
  if os.path.isdir(results):
    raise common_flags.CommandLineError(f'--results_file={results}: a folder, not a file')
  if not os.path.isdir(os.path.dirname(os.path.abspath(results))):
    raise common_flags.CommandLineError(f'--results_file={results}: its folder does not exist')
  return places


def place(plan, places, *, write: bool) -> list[Placed]:
  """Each run with its download folders under the data root; at the tiny scale (no
  --data_root) the synthetic layouts, written into the workdir when `write`."""
  root = places['data_root']
  if root is None:
    root = os.path.join(places['workdir'], 'synthetic')
    if write:
      synthetic.ensure_written(root)
    find = lambda folders, _: os.path.join(root, folders[0])
  else:
    find = lambda folders, name: find_folder(root, folders, name)
  return [Placed(run, find(run.folders, run.name),
                 tuple((e, find(e.folders, run.name) if e.folders else None)
                       for e in run.evaluations),
                 find(run.overlap_folders, run.name) if run.overlap_folders else None)
          for run in plan]


def main(values, rest):
  del rest
  try:
    places = prepare_places(values)
    everything = reproduce_plan.runs(values.scale)
    chosen = selected(everything, values.only)
    os.chdir(REPO)  # the commands run there, with the paths as they show them
    placed = place(chosen, places, write=not values.dry_run and not values.tables_only)
  except common_flags.CommandLineError as error:
    common_flags.fail(str(error))
  if values.dry_run:
    for one in placed:
      lines = [shown(command) for command in commands(one, places)]
      print(f'{one.name}: {state_of(one, places)}', *(f'  {line}' for line in lines),
            sep='\n')
    return
  os.makedirs(places['workdir'], exist_ok=True)
  try:
    with WorkdirLock(places['workdir']):
      places['machine'] = machine()
      if not values.tables_only:
        for one in placed:
          run_one(one, places)
      written = reproduce_tables.update(
          places['results_file'], values.scale, reproduce_plan.rows(), everything,
          places['summaries'], reproduce_plan.SETTINGS[values.scale].note)
  except ConfigError as error:  # the lock: another reproduce writes this workdir
    common_flags.fail(f'{error} (another reproduce is running at this --workdir)')
  except reproduce_tables.MarkerError as error:
    common_flags.fail(str(error))
  except OSError as error:  # the tables' file; the runs' summaries are written
    common_flags.fail(f'--results_file={places["results_file"]}: cannot write it '
                      f'({error.strerror}); the summaries in {places["summaries"]} are kept, '
                      'and --tables_only writes the tables from them')
  print(f'reproduce: tables of {written} written to {places["results_file"]}')


def run_one(placed: Placed, places):
  """Runs (or continues) one run's commands and writes its summary; skips a done run."""
  command_lines = [shown(command) for command in commands(placed, places)]
  state = state_of(placed, places)
  workdir = os.path.join(places['workdir'], placed.name)
  if state == 'done':
    print(f'reproduce: {placed.name} done (its summary is kept)', flush=True)
    keep_new_figures(placed, places)
    return
  if state == 'changed' and os.path.isdir(workdir) and not trains_the_same(placed, places):
    # Its row changed: the old checkpoints are another run's, which train.py would refuse.
    # (Where only the evaluations changed, train.py finds its run done and they run again.)
    shutil.rmtree(workdir)
  os.makedirs(workdir, exist_ok=True)
  write_json(os.path.join(workdir, TRAINING_RECORD), training_identity(placed.run))
  log_path = os.path.join(workdir, 'reproduce.log')
  timing_path = os.path.join(workdir, 'reproduce_wall_s.json')
  spent = load_spent(timing_path)
  print(f'reproduce: {placed.name} ({state}); log: {log_path}', flush=True)
  for command, line in zip(commands(placed, places), command_lines):
    try:
      spent += execute(command, log_path)
    except Stopped as stopped:
      write_json(timing_path, spent + stopped.seconds)
      print(f'reproduce: stopped during {placed.name}; its checkpoint is kept and the same '
            'command continues it', file=sys.stderr)
      sys.exit(stopped.status)
    except Failed as failed:
      write_json(timing_path, spent + failed.seconds)
      common_flags.fail(f'{placed.name} failed (exit status {failed.status}): '
                        f'{last_line(log_path)}; its log: {log_path}; the command: {line}')
    write_json(timing_path, spent)
  summary = summarize(placed, places, command_lines, spent)
  write_json(os.path.join(places['summaries'], f'{placed.name}.json'), summary)


def load_spent(path: str) -> float:
  """Seconds the run's commands took in earlier, interrupted starts."""
  try:
    with open(path) as file:
      return float(json.load(file))
  except (OSError, ValueError, TypeError):
    return 0.0


def last_line(path: str) -> str:
  """The log's last line of text (the launcher's one-line error, when it failed)."""
  with open(path, 'rb') as file:
    text = file.read()[-20000:].decode(errors='replace').replace('\r', '\n')
  lines = [line.strip() for line in text.split('\n') if line.strip()]
  return lines[-1] if lines else '(no output)'


if __name__ == '__main__':
  common_flags.run(main, define)
