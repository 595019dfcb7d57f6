"""Overlap between prepared splits: found by pixels, cached per split, never stale."""

import os

import numpy as np
import pytest

from skinjax.data import builders, overlap, split_fingerprints


@pytest.fixture(scope='module')
def prepared(ham_in_isic9, tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('overlap') / 'tfds')
  layouts = ham_in_isic9
  return {'ham': builders.prepare('ham10000', data_dir=data_dir, manual_dir=layouts['ham10000']),
          'isic': builders.prepare('isic9', data_dir=data_dir, manual_dir=layouts['isic9']),
          'planted': layouts['planted'], 'copies': layouts['copies']}


def test_every_planted_copy_is_found_and_nothing_else(prepared):
  splits = ('train', 'validation', 'test')
  found = set()
  for split in splits:
    result = overlap.overlap(prepared['ham'], splits, prepared['isic'], split)
    assert result.count == len(set(result.target_index.tolist()))
    # Copies by name: the planted files keep their HAM10000 image ids.
    assert all(pair['target_id'] == pair['source_id'] for pair in result.pairs())
    assert not result.exact.any()  # squashed and re-encoded: near-duplicates only
    found |= set(result.target_id.tolist())
  assert found == {row['original'].split('/')[1] for row in prepared['planted']}
  assert len(found) == prepared['copies']


def test_the_mask_follows_the_data_source_order(prepared):
  result = overlap.overlap(prepared['ham'], ['train', 'validation', 'test'], prepared['isic'],
                           'train')
  source = prepared['isic'].as_data_source('train')
  ids = [source[i]['image_id'].decode() for i in range(len(source))]
  assert [ids[i] for i in np.flatnonzero(result.mask)] == sorted(
      set(result.target_id.tolist()), key=ids.index)
  labels = [source[i]['label'] for i in range(len(source))]
  names = prepared['isic'].info.features['label'].names
  assert sum(result.by_class(labels, names).values()) == result.count


def test_exact_only_finds_no_re_encoded_copy(prepared):
  result = overlap.overlap(prepared['ham'], 'train', prepared['isic'], 'train', max_distance=-1)
  assert result.count == 0 and len(result.pairs()) == 0


def test_fingerprints_are_read_from_the_cache_the_second_time(prepared, monkeypatch):
  builder = prepared['isic']
  first = split_fingerprints.load(builder, 'train')

  def no_compute(*args, **kwargs):
    raise AssertionError('computed again')

  monkeypatch.setattr(split_fingerprints, 'compute', no_compute)
  again = split_fingerprints.load(builder, 'train')
  np.testing.assert_array_equal(again.phash, first.phash)
  np.testing.assert_array_equal(again.digest, first.digest)


def test_a_rebuilt_split_gets_a_new_cache_key(prepared):
  builder = prepared['isic']
  key = split_fingerprints.cache_key(builder, 'test')
  path = os.fspath(builder.info.splits['test'].filepaths[0])
  stat = os.stat(path)
  os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
  try:
    assert split_fingerprints.cache_key(builder, 'test') != key
  finally:
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_an_unknown_split_is_named(prepared):
  with pytest.raises(ValueError, match=r"has no split 'dev' \(it has test, train, validation\)"):
    overlap.overlap(prepared['ham'], 'dev', prepared['isic'], 'test')
