"""Every row of `make reproduce`, at every scale, is a command line the launchers accept:
its config file, overrides and flags pass launch/train.py's checks (without running it),
each row has its runs, and a run's identity leaves out where its files live."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'launch'))
import common_flags  # noqa: E402  (launch/ is not a package)
import evaluate  # noqa: E402
import export_backbone  # noqa: E402
import reproduce  # noqa: E402
import reproduce_plan  # noqa: E402
import train  # noqa: E402


def placed_runs(scale, root):
  places = {'workdir': str(root / 'runs'), 'tfds': str(root / 'tfds')}
  plan = []
  for run in reproduce_plan.runs(scale):
    folder = lambda name: str((root / name).mkdir(exist_ok=True) or root / name)
    plan.append(reproduce.Placed(
        run, folder(run.folders[0]),
        tuple((e, folder(e.folders[0]) if e.folders else None) for e in run.evaluations),
        folder(run.overlap_folders[0]) if run.overlap_folders else None))
    if run.export_backbone:  # what the later runs' --config.init_from names
      (root / 'runs' / run.name / reproduce_plan.BACKBONE).mkdir(parents=True)
  return places, plan


@pytest.mark.parametrize('scale', reproduce_plan.SCALES)
def test_every_train_command_passes_the_launchers_checks(scale, tmp_path):
  places, plan = placed_runs(scale, tmp_path)
  for placed in plan:
    command = reproduce.commands(placed, places)[0]
    invocation = train.parse_and_check([command[0], *command[1:]], num_devices=1)
    assert invocation.spec.seed == placed.run.seed
    starts = dict(placed.run.overrides).get('init_from')
    if starts:
      assert invocation.spec.init_from.endswith(f'{placed.run.needs[0]}/backbone')
    for command in reproduce.commands(placed, places)[1:]:  # their flags parse too
      launcher = {'launch/evaluate.py': evaluate, 'launch/export_backbone.py': export_backbone}
      common_flags.parse(command, launcher[command[0]].define, required=('workdir',))


@pytest.mark.parametrize('scale', reproduce_plan.SCALES)
def test_every_row_has_runs_and_every_run_a_row(scale):
  runs = reproduce_plan.runs(scale)
  settings = reproduce_plan.SETTINGS[scale]
  # The comparison networks run only where the scale names them (2 CPU cores: two).
  planned = ({f'paper1_{n}' for n in settings.paper1_comparisons}
             | {f'paper2_{n}' for n in settings.paper2_comparisons}
             | {f'{n}_ham10000_grouped' for n in settings.paper2_comparisons})
  comparison_keys = ({f'paper1_{n}' for n in reproduce_plan.PAPER1_COMPARISONS}
                     | {f'paper2_{n}' for n in reproduce_plan.PAPER2_COMPARISONS}
                     | {f'{n}_ham10000_grouped' for n in reproduce_plan.PAPER2_COMPARISONS})
  rows = {(row.table, row.key) for row in reproduce_plan.rows()
          if row.key not in comparison_keys or row.key in planned}
  assert {(run.table, run.row) for run in runs} == rows
  assert len({run.name for run in runs}) == len(runs)
  headline = [run for run in runs if run.row in ('paper_aug', 'lesion_duplication')]
  assert sorted(run.seed for run in headline) == sorted(settings.seeds * 2)


def test_a_run_comes_after_the_runs_it_starts_from():
  runs = reproduce_plan.runs('cpu')
  order = [run.name for run in runs]
  by_name = {run.name: run for run in runs}
  for position, run in enumerate(runs):
    for needed in run.needs:
      assert order.index(needed) < position
    if 'init_from' in dict(run.overrides):
      assert by_name[run.needs[0]].export_backbone
    for evaluation in run.evaluations:
      if evaluation.crop_with:
        assert by_name[evaluation.crop_with].table == 'table8'  # a segmenter


def test_the_identity_leaves_out_the_paths(tmp_path):
  run = reproduce_plan.runs('cpu')[0]
  identity = reproduce.identity(run)
  assert run.config in identity and f'--config.seed={run.seed}' in identity
  assert not any('runs/' in part or 'shared' in part for part in identity)


def test_the_cpu_scale_trains_resnet50_and_mobilenetv2_as_its_b3():
  runs = {run.name: run for run in reproduce_plan.runs('cpu')}
  comparisons = sorted(name for name, run in runs.items() if run.table == 'comparisons')
  assert comparisons == ['mobilenetv2_all9_ham10000_grouped_s0',
                         'resnet50_all9_ham10000_grouped_s0']
  b3 = runs['b3_all9_ham10000_grouped_s0']
  b3_pretraining = runs['b3_ham10000_grouped_s0']
  for network in ('resnet50', 'mobilenetv2'):
    run, pretraining = runs[f'{network}_all9_ham10000_grouped_s0'], runs[
        f'{network}_ham10000_grouped_s0']

    def without_model(r):
      return {k: v for k, v in r.overrides if k not in ('model', 'init_from')}
    assert (run.config, without_model(run)) == (b3.config, without_model(b3))
    assert (pretraining.config, without_model(pretraining)) == (
        b3_pretraining.config, without_model(b3_pretraining))
    assert dict(run.overrides)['model'] == dict(pretraining.overrides)['model'] == (
        f'{network}_skin')
    assert run.needs == (pretraining.name,) and pretraining.export_backbone
