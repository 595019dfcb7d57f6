"""The input pipeline: cached uint8 arrays, device-resident or streamed batches, one step."""

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from skinjax.augment import PAPER1_CLASSIFICATION
from skinjax.data import arrays as arrays_lib, builders, pipeline, synthetic
from skinjax.data.arrays import SplitArrays
from skinjax.models import create_model
from skinjax.train import passes
from skinjax.train.parallel import make_parallel
from skinjax.train.state import create_train_state, keras_adam
from skinjax.train.tasks import ClassificationTask

tfds.disable_progress_bar()


@pytest.fixture(scope='module')
def ph2_builder(tmp_path_factory):
  root = tmp_path_factory.mktemp('ph2')
  manual = synthetic.write_ph2(root / 'manual', cases_per_class={
      name: 4 for name in synthetic.PH2_CLASSES}, image_size=(64, 48))
  return builders.prepare('ph2', data_dir=str(root / 'tfds'), manual_dir=str(manual))


def test_a_split_is_decoded_resized_and_cached_once(ph2_builder, monkeypatch):
  first = arrays_lib.load_split(ph2_builder, 'train', 32)
  assert first.images.shape == (len(first), 32, 32, 3) and first.images.dtype == np.uint8
  assert first.masks.shape == (len(first), 32, 32, 1)
  assert set(np.unique(first.masks)) == {0, 1}
  assert first.image_ids[0].startswith('IMD')

  def no_decoding(*args):
    raise AssertionError('decoded again instead of reading the cache')

  monkeypatch.setattr(arrays_lib, '_decoded_examples', no_decoding)
  second = arrays_lib.load_split(ph2_builder, 'train', 32)
  np.testing.assert_array_equal(second.images, first.images)
  np.testing.assert_array_equal(second.masks, first.masks)
  np.testing.assert_array_equal(second.labels, first.labels)
  with pytest.raises(AssertionError, match='decoded again'):
    arrays_lib.load_split(ph2_builder, 'train', 48)  # another resolution is another key


def test_cached_images_are_memory_mapped_and_an_interrupted_write_leaves_no_cache(
    ph2_builder, monkeypatch, tmp_path):
  # Memory-mapped: a process reads from disk only the rows it gathers.
  assert isinstance(arrays_lib.load_split(ph2_builder, 'train', 32).images, np.memmap)
  saved = []

  def save_then_die(file, value, **kwargs):
    if saved:  # the second array of the folder
      raise KeyboardInterrupt
    saved.append(file)
    np.lib.format.write_array(open(file, 'wb'), value)

  monkeypatch.setattr(arrays_lib.np, 'save', save_then_die)
  with pytest.raises(KeyboardInterrupt):
    arrays_lib.load_split(ph2_builder, 'train', 32, cache_dir=tmp_path)
  monkeypatch.undo()
  assert saved and not arrays_lib.cache_path(ph2_builder, 'train', 32, tmp_path).exists()
  assert len(arrays_lib.load_split(ph2_builder, 'train', 32, cache_dir=tmp_path)) == len(
      arrays_lib.load_split(ph2_builder, 'train', 32))


def test_sharded_train_batches_give_each_shard_its_own_columns():
  # Balanced indices repeat examples; 3 shards of a batch of 12 take 4 columns each.
  indices = np.repeat(np.arange(50), np.where(np.arange(50) < 10, 3, 1))  # 70 entries
  order = pipeline.train_order(indices, 12, epoch=1, seed=5, num_shards=3)
  assert order.shape == (70 // 12, 12)
  for shard in range(3):
    columns = order[:, shard * 4:(shard + 1) * 4]
    assert set(np.unique(columns % 3)) == {shard}
    own = indices[indices % 3 == shard]
    # Each shard's entries appear at most as often as they occur, plus a restart when short.
    counts = np.bincount(columns.ravel(), minlength=50)
    allowed = np.bincount(own, minlength=50) * 2
    assert (counts <= allowed).all()
  # Another epoch, another order; the same epoch, the same order.
  assert not np.array_equal(order, pipeline.train_order(indices, 12, epoch=2, seed=5,
                                                        num_shards=3))
  np.testing.assert_array_equal(order, pipeline.train_order(indices, 12, epoch=1, seed=5,
                                                            num_shards=3))
  with pytest.raises(ValueError, match='batch size 12 is not divisible by the 5 data shards'):
    pipeline.train_order(indices, 12, epoch=0, seed=0, num_shards=5)


@pytest.mark.parametrize('num_examples,num_shards', [(10, 1), (10, 3), (2, 3), (0, 2)])
def test_sharded_eval_batches_hold_every_example_once(num_examples, num_shards):
  batches = pipeline.eval_order(num_examples, 6, num_shards)
  valid = np.concatenate([b['index'][b['valid']] for b in batches] or [np.zeros(0, int)])
  assert sorted(valid.tolist()) == list(range(num_examples))
  per_shard = 6 // num_shards
  for batch in batches:
    assert batch['index'].shape == batch['valid'].shape == (6,)
    for shard in range(num_shards):
      columns = batch['index'][shard * per_shard:(shard + 1) * per_shard]
      if num_examples > shard:  # padding repeats a row of the shard itself
        assert set((columns % num_shards).tolist()) == {shard}


def test_mask_resizing_keeps_the_majority_of_each_area():
  mask = np.zeros((8, 8, 1), np.uint8)
  mask[:4, :4] = 1
  mask[4:, 4:5] = 1  # a quarter of the bottom-right quadrant: too little to win
  np.testing.assert_array_equal(arrays_lib.resize_mask(mask, 2)[..., 0], [[1, 0], [0, 0]])


def colour_arrays(n=96, seed=0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 7, n).astype(np.int32)
  colours = np.random.default_rng(99).integers(30, 225, (7, 3))
  images = np.clip(colours[labels][:, None, None] + rng.normal(0, 20, (n, 28, 28, 3)), 0, 255)
  return SplitArrays(images.astype(np.uint8), labels, np.array([str(i) for i in range(n)]))


def train_with(placement, mode='jit'):
  model, task = create_model('deepconvnet'), ClassificationTask(7)
  parallel = make_parallel(mode, model, task, jax.devices()[:2],
                           preprocess=pipeline.Preprocess(augment=PAPER1_CLASSIFICATION))
  data = colour_arrays()
  train = pipeline.InputPipeline(data, parallel, placement=placement)
  state = parallel.replicate(create_train_state(jax.random.key(0), model, (1, 28, 28, 3),
                                                keras_adam(1e-3)))
  order = pipeline.train_order(np.arange(len(data)), 16, epoch=0, seed=0)
  state, metrics, _ = passes.train_epoch(parallel, train, state, order, jax.random.key(1))
  # The first 54 examples: 3 full batches and a padded one of 6.
  result, _ = passes.eval_pass(parallel, state, train, pipeline.eval_order(54, 16))
  return parallel.fetch(state), metrics, result


def test_device_resident_and_streamed_data_train_the_same():
  resident_state, resident_train, resident_eval = train_with('device')
  streamed_state, streamed_train, streamed_eval = train_with('stream')
  for a, b in zip(jax.tree.leaves(resident_state.params), jax.tree.leaves(streamed_state.params)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert resident_train['loss'] == pytest.approx(streamed_train['loss'], rel=1e-6)
  assert resident_eval['count'] == streamed_eval['count'] == 54
  assert resident_eval['accuracy'] == streamed_eval['accuracy']


def test_resident_steps_receive_only_indices():
  parallel = make_parallel('jit', create_model('deepconvnet'), ClassificationTask(7),
                           jax.devices()[:2], preprocess=pipeline.Preprocess())
  train = pipeline.InputPipeline(colour_arrays(), parallel, placement='device')
  batch = next(train.batches([np.arange(16, dtype=np.int32)]))
  assert set(batch) == {'index'} and batch['index'].dtype == np.int32
  assert batch['index'].nbytes == 16 * 4
  assert set(train.data) == {'image', 'label'} and train.data['image'].dtype == np.uint8


def test_placement_follows_the_memory_budget():
  data = colour_arrays()  # 96 * 28 * 28 * 3 bytes of images
  devices = jax.devices()[:1]
  assert pipeline.choose_placement(data, devices, budget_bytes=data.nbytes()) == 'device'
  assert pipeline.choose_placement(data, devices, budget_bytes=data.nbytes() - 1) == 'stream'
  assert pipeline.choose_placement(data, devices, 'stream', budget_bytes=10**12) == 'stream'
  with pytest.raises(ValueError, match="--data_placement must be one of .* got 'gpu'"):
    pipeline.choose_placement(data, devices, 'gpu')


def test_a_streaming_error_reaches_the_training_loop():
  parallel = make_parallel('jit', create_model('deepconvnet'), ClassificationTask(7),
                           jax.devices()[:1])
  train = pipeline.InputPipeline(colour_arrays(), parallel, placement='stream')
  batches = train.batches([np.arange(8, dtype=np.int32), np.array([500] * 8, np.int32)])
  next(batches)
  with pytest.raises(IndexError):
    next(batches)


def test_train_order_shuffles_each_epoch_and_drops_the_remainder():
  indices = np.arange(50)
  epoch0 = pipeline.train_order(indices, 16, epoch=0, seed=0)
  assert epoch0.shape == (3, 16) and epoch0.dtype == np.int32
  assert len(set(epoch0.ravel())) == 48
  np.testing.assert_array_equal(epoch0, pipeline.train_order(indices, 16, epoch=0, seed=0))
  assert not np.array_equal(epoch0, pipeline.train_order(indices, 16, epoch=1, seed=0))
