"""MSRN's label side: co-occurrence statistics of a training split, and the authors' pickles read without code."""

import os
import pickle

import numpy as np
import pytest
from datasets import Dataset, DatasetDict

from transformers_hsvlt.data import multilabel_features
from transformers_hsvlt.data.cooccurrence import label_cooccurrence
from transformers_hsvlt.msrn.label_graph import (
    load_cooccurrence,
    load_word_vectors,
    read_numpy_pickle,
)


def tiny_split(with_ignore=True):
    columns = {"image": [None] * 4, "labels": [[0, 1], [1, 2], [0, 1, 2], [3]]}
    if with_ignore:
        columns["ignore"] = [[], [0], [], [2]]
    features = multilabel_features(["a", "b", "c", "d"], with_ignore=with_ignore)
    return Dataset.from_dict(columns, features=features)


def test_cooccurrence_counts_images_and_pairs():
    statistics = label_cooccurrence(DatasetDict(train=tiny_split(with_ignore=False), test=tiny_split()))
    np.testing.assert_array_equal(statistics.counts, [2, 3, 2, 1])
    expected = np.array([[0, 2, 1, 0], [2, 0, 2, 0], [1, 2, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(statistics.pair_counts, expected)


def test_ignored_labels_count_as_configured():
    present = label_cooccurrence(tiny_split())  # the authors: "difficult" counts as present
    np.testing.assert_array_equal(present.counts, [3, 3, 3, 1])
    assert present.pair_counts[0, 2] == 2 and present.pair_counts[2, 3] == 1
    absent = label_cooccurrence(tiny_split(), ignored_count_as="absent")
    np.testing.assert_array_equal(absent.counts, [2, 3, 2, 1])
    assert absent.pair_counts[0, 2] == 1 and absent.pair_counts[2, 3] == 0
    with pytest.raises(ValueError, match="ignored_count_as"):
        label_cooccurrence(tiny_split(), ignored_count_as="skip")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_authors_pickles_are_read(tmp_path, protocol):
    nums, adj = np.array([3, 5, 0]), np.array([[0, 2, 0], [2, 0, 0], [0, 0, 0]])
    (tmp_path / "adj.pkl").write_bytes(pickle.dumps({"nums": nums, "adj": adj}, protocol=protocol))
    vectors = np.random.default_rng(0).standard_normal((3, 300)).astype(np.float32)
    (tmp_path / "glove.pkl").write_bytes(pickle.dumps(vectors, protocol=protocol))
    statistics = load_cooccurrence(tmp_path / "adj.pkl")
    np.testing.assert_array_equal(statistics.counts, nums)
    np.testing.assert_array_equal(statistics.pair_counts, adj)
    np.testing.assert_array_equal(load_word_vectors(tmp_path / "glove.pkl"), vectors)


def test_numpy_1_module_names_and_scalars_are_read(tmp_path):
    data = pickle.dumps({"adj": [np.eye(2)], "scale": np.float64(2.5)}, protocol=2)
    data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")  # as pickled by NumPy 1.x
    assert b"numpy.core.multiarray" in data
    (tmp_path / "old.pkl").write_bytes(data)
    loaded = read_numpy_pickle(tmp_path / "old.pkl")
    np.testing.assert_array_equal(loaded["adj"][0], np.eye(2))
    assert loaded["scale"] == 2.5


def test_npy_and_npz_copies(tmp_path):
    np.save(tmp_path / "vectors.npy", np.ones((4, 6)))
    np.savez(tmp_path / "adj.npz", nums=np.ones(4), adj=np.zeros((4, 4)))
    assert load_word_vectors(tmp_path / "vectors.npy").shape == (4, 6)
    assert load_cooccurrence(tmp_path / "adj.npz").pair_counts.shape == (4, 4)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "coco_adj.pkl"
    path.write_bytes(pickle.dumps({"nums": np.ones(2), "adj": _Exploit(marker)}))
    with pytest.raises(ValueError, match=r"coco_adj\.pkl.*(posix|os|nt)\.system") as error:
        load_cooccurrence(path)
    assert "\n" not in str(error.value)
    assert not marker.exists()


def test_wrong_contents_are_named(tmp_path):
    (tmp_path / "adj.pkl").write_bytes(pickle.dumps({"counts_only": np.ones(2)}))
    with pytest.raises(ValueError, match="'nums' and 'adj'"):
        load_cooccurrence(tmp_path / "adj.pkl")
    (tmp_path / "vectors.pkl").write_bytes(pickle.dumps(np.ones(3)))
    with pytest.raises(ValueError, match="num_labels, width"):
        load_word_vectors(tmp_path / "vectors.pkl")
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps({"nums": np.ones(2), "adj": -np.ones((2, 2))}))
    with pytest.raises(ValueError, match=">= 0"):
        load_cooccurrence(tmp_path / "bad.pkl")
