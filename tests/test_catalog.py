"""What the run spec knows of each dataset and task without building anything agrees with
the builders and the metrics themselves."""

import pytest

from skinjax.data import builders, catalog
from skinjax.train.tasks import METRICS, ClassificationTask, SegmentationTask


@pytest.mark.parametrize('name', catalog.DATASET_NAMES)
def test_the_catalog_lists_each_builders_configs_and_which_carry_masks(name):
  builder_class = builders.builder_class(name)
  configs = tuple(config.name for config in builder_class.BUILDER_CONFIGS)
  entry = catalog.DATASETS[name]
  assert entry.configs == configs
  for config in configs or ('',):
    builder = builder_class(data_dir='/nonexistent', config=config or None)
    assert entry.has_masks(config) == ('mask' in builder.info.features), config


@pytest.mark.parametrize('task', [ClassificationTask(3), SegmentationTask('jaccard')])
def test_the_metric_names_a_spec_may_rank_by_are_those_the_task_computes(task):
  name = 'classification' if isinstance(task, ClassificationTask) else 'segmentation'
  computed = task.empty_metrics().compute()
  scalars = {key for key, value in computed.items() if isinstance(value, float)}
  assert set(METRICS[name]) == scalars
