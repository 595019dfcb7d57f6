"""Keras -> Flax conversion: a rename, every problem reported, checkpoints that load back."""

import contextlib

import h5py
import numpy as np
import orbax.checkpoint as ocp
import pytest

from skinjax.convert import converted_weights

from skinjax.convert.keras_efficientnet_v2 import (ConversionError, abstract_variables,
                                                   expected_layers, load_converted,
                                                   map_keras_weights, read_keras_weights,
                                                   save_converted)
from skinjax.models import create_model


@pytest.fixture(scope='module')
def expected():
  return expected_layers(abstract_variables(create_model('efficientnetv2_tiny', num_classes=5)))


def keras_like_weights(expected, seed=0):
  """What a reader returns for a fitting file: {layer: [(name, array), ...]} in Keras order."""
  rng = np.random.default_rng(seed)
  return {layer: [(f'{layer}/{keras_var}', rng.normal(size=shape).astype(np.float32))
                  for _, keras_var, shape in variables]
          for layer, variables in expected.items()}


def test_keras_layer_names_and_variable_order_map_to_flax_paths(expected):
  found = keras_like_weights(expected)
  variables, report = map_keras_weights(found, expected)
  params, stats = variables['params'], variables['batch_stats']
  np.testing.assert_array_equal(params['block4a']['dwconv2']['kernel'],
                                found['block4a_dwconv2'][0][1])
  gamma, beta, moving_mean, moving_variance = (a for _, a in found['block4a_expand_bn'])
  np.testing.assert_array_equal(params['block4a']['expand_bn']['scale'], gamma)
  np.testing.assert_array_equal(params['block4a']['expand_bn']['bias'], beta)
  np.testing.assert_array_equal(stats['block4a']['expand_bn']['mean'], moving_mean)
  np.testing.assert_array_equal(stats['block4a']['expand_bn']['var'], moving_variance)
  np.testing.assert_array_equal(params['stem_conv']['kernel'], found['stem_conv'][0][1])
  np.testing.assert_array_equal(params['predictions']['bias'], found['predictions'][1][1])
  assert report['converted_layers'] == len(expected) and report['skipped'] == []


def test_every_missing_unexpected_or_misshapen_tensor_is_reported_together(expected):
  found = keras_like_weights(expected)
  del found['stem_bn']
  found['top_conv'] = [('top_conv/kernel:0', np.zeros((1, 1, 48, 321), np.float32))]
  found['block1a_project_conv'] = [('block1a_project_conv/bias:0', np.zeros((3, 3, 8, 8)))]
  found['dense_7'] = [('dense_7/kernel:0', np.zeros((320, 2)))]
  with pytest.raises(ConversionError) as error:
    map_keras_weights(found, expected, source='x.h5')
  message = str(error.value)
  assert 'x.h5 does not fit the model (4 problems)' in message
  assert 'missing layer stem_bn: expected shapes [(8,), (8,), (8,), (8,)]' in message
  assert 'shape mismatch at top_conv/kernel: file (1, 1, 48, 321), model (1, 1, 48, 320)' in message
  assert ("block1a_project_conv: variable 0 is 'block1a_project_conv/bias:0', expected kernel"
          in message)
  assert 'unexpected layer dense_7 in the file, shapes [(320, 2)]' in message


def test_a_file_that_is_not_keras_weights_is_named_in_the_error(tmp_path):
  path = tmp_path / 'other.h5'
  with h5py.File(path, 'w') as f:
    f['data'] = np.zeros(3)
  with pytest.raises(ConversionError, match=r'other\.h5: not a Keras weights file'):
    read_keras_weights(str(path))
  text = tmp_path / 'notes.txt'
  text.write_text('hello')
  with pytest.raises(ConversionError, match=r'notes\.txt: expected a Keras \.keras, '
                                            r'\.weights\.h5 or \.h5 file'):
    read_keras_weights(str(text))


def test_converted_weights_load_back_with_their_config(expected, tmp_path):
  variables, _ = map_keras_weights(keras_like_weights(expected), expected)
  config = {'model': 'efficientnetv2_tiny', 'num_classes': 5, 'image_size': 64}
  save_converted(str(tmp_path / 'converted'), variables, config)
  loaded, loaded_config = load_converted(str(tmp_path / 'converted'))
  assert loaded_config == config
  np.testing.assert_array_equal(loaded['batch_stats']['top_bn']['var'],
                                variables['batch_stats']['top_bn']['var'])
  np.testing.assert_array_equal(loaded['params']['block6b']['se_reduce']['kernel'],
                                variables['params']['block6b']['se_reduce']['kernel'])


def small_variables():
  return {'params': {'dense': {'kernel': np.arange(12, dtype=np.float32).reshape(3, 4)}}}


def test_a_folder_filled_by_another_conversion_meanwhile_is_kept_and_named(tmp_path,
                                                                             monkeypatch):
  output = tmp_path / 'converted'
  real_manager = converted_weights._manager

  @contextlib.contextmanager
  def another_process_finishes_first(directory, **kwargs):
    with real_manager(directory, **kwargs) as manager:
      yield manager
    output.mkdir()
    (output / 'theirs').write_text('kept')

  monkeypatch.setattr(converted_weights, '_manager', another_process_finishes_first)
  with pytest.raises(FileExistsError, match=f'{output} exists and is not an empty folder'):
    save_converted(str(output), small_variables(), {'model': 'x'})
  assert sorted(p.name for p in tmp_path.iterdir()) == ['converted']  # no partial left
  assert [p.name for p in output.iterdir()] == ['theirs']


def test_a_conversion_that_fails_while_writing_leaves_nothing(tmp_path, monkeypatch):
  def full_disk(self, *args, **kwargs):
    raise OSError(28, 'No space left on device')

  monkeypatch.setattr(ocp.CheckpointManager, 'save', full_disk)
  with pytest.raises(OSError, match='No space left'):
    save_converted(str(tmp_path / 'converted'), small_variables(), {'model': 'x'})
  assert list(tmp_path.iterdir()) == []


def test_an_empty_folder_is_taken_and_an_occupied_one_refused_before_writing(tmp_path):
  (tmp_path / 'empty').mkdir()
  save_converted(str(tmp_path / 'empty'), small_variables(), {'model': 'x'})
  assert (tmp_path / 'empty' / '0').is_dir()
  with pytest.raises(FileExistsError, match='empty exists and is not an empty folder'):
    save_converted(str(tmp_path / 'empty'), small_variables(), {'model': 'x'})
  (tmp_path / 'file').write_text('a file')
  with pytest.raises(FileExistsError, match='file exists and is not an empty folder'):
    save_converted(str(tmp_path / 'file'), small_variables(), {'model': 'x'})
  assert sorted(p.name for p in tmp_path.iterdir()) == ['empty', 'file']
