"""MSRN's label side (toolkit code, not saved with checkpoints): label co-occurrence statistics of a training split,
and the authors' label files read without running code.

MSRN needs, besides the images, one vector per class name (the authors: 300-d GloVe vectors,
`data/<set>/<set>_glove_word2vec.pkl`, a `(C, 300)` NumPy array) and the label statistics of the training split
(`data/<set>/<set>_adj.pkl`, a dict: `nums` `(C,)`, the number of training images holding each label, and `adj`
`(C, C)`, the number holding both labels, diagonal 0). The model turns the statistics into its adjacency (see
`modeling_msrn_graph.normalized_adjacency`).

The authors' files are pickles. `read_numpy_pickle` reads them with an unpickler that can only rebuild NumPy arrays,
dtypes and scalars (inside dicts, lists and tuples): any other global (a function or class a malicious pickle would
call) is refused with a `ValueError` naming the file and the global, before anything is called. `.npy` and `.npz`
copies are read with `numpy.load(allow_pickle=False)`.
"""

import io
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..registry import LabelCooccurrence


def _numpy_core():
    try:
        import numpy._core as core  # NumPy 2
    except ImportError:  # pragma: no cover - NumPy 1
        import numpy.core as core
    return core


def _allowed_globals() -> dict[tuple[str, str], object]:
    """The globals a pickle of NumPy arrays needs, under the module names of NumPy 1.x (`numpy.core`) and 2.x
    (`numpy._core`), resolved to the installed NumPy: array reconstruction (`_reconstruct`, `ndarray`, and
    `_frombuffer` for protocol 5), `dtype`, NumPy scalars (`scalar`), and `_codecs.encode`, which protocol-2 pickles
    use to store bytes."""
    import _codecs

    core = _numpy_core()
    functions = {
        "multiarray._reconstruct": core.multiarray._reconstruct,
        "multiarray.scalar": core.multiarray.scalar,
        "numeric._frombuffer": core.numeric._frombuffer,
    }
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): _codecs.encode}
    for package in ("numpy.core", "numpy._core"):
        for name, function in functions.items():
            module, attribute = name.split(".")
            allowed[(f"{package}.{module}", attribute)] = function
    return allowed


class _NumpyUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        super().__init__(file, encoding="latin1")  # latin1: NumPy arrays pickled by Python 2 (as ML-GCN's files)
        self.path = path
        self.allowed = _allowed_globals()

    def find_class(self, module: str, name: str):
        if (module, name) not in self.allowed:
            raise ValueError(
                f"{self.path}: refused to unpickle the global {module}.{name}; only NumPy arrays (in dicts and lists) "
                "are read, and no code from the file was run."
            )
        return self.allowed[(module, name)]


def read_numpy_pickle(path: str | os.PathLike):
    """Unpickle a file holding only NumPy arrays, scalars and plain containers (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    try:
        return _NumpyUnpickler(io.BytesIO(path.read_bytes()), path).load()
    except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, ImportError, IndexError) as error:
        raise ValueError(f"{path} is not a readable pickle of NumPy arrays: {error}") from error


def _read_arrays(path: Path):
    """A `.npy` array, the arrays of a `.npz` (as a dict), or a pickle of NumPy data (any other suffix)."""
    if path.suffix in (".npy", ".npz"):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist.")
        try:
            loaded = np.load(path, allow_pickle=False)
        except ValueError as error:
            raise ValueError(f"{path}: only plain NumPy arrays are read (no pickled objects): {error}") from error
        return dict(loaded) if path.suffix == ".npz" else loaded
    return read_numpy_pickle(path)


def load_word_vectors(path: str | os.PathLike) -> np.ndarray:
    """The `(num_labels, width)` label-name vectors of the authors' `*_glove_word2vec.pkl`, or a `.npy` copy, as
    float32."""
    path = Path(path)
    vectors = _read_arrays(path)
    if not isinstance(vectors, np.ndarray) or vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.number):
        described = vectors.shape if isinstance(vectors, np.ndarray) else type(vectors).__name__
        raise ValueError(
            f"{path}: expected a (num_labels, width) numeric array of label-name vectors, got {described}."
        )
    if not np.isfinite(vectors).all():
        raise ValueError(f"{path}: the label-name vectors hold NaN or infinite values.")
    return vectors.astype(np.float32)


def load_cooccurrence(path: str | os.PathLike) -> LabelCooccurrence:
    """The label statistics of the authors' `*_adj.pkl` (a dict with `nums` and `adj`), or of a `.npz` holding
    `nums` and `adj` (or `counts` and `pair_counts`)."""
    path = Path(path)
    loaded = _read_arrays(path)
    for counts_key, pairs_key in (("nums", "adj"), ("counts", "pair_counts")):
        if isinstance(loaded, Mapping) and counts_key in loaded and pairs_key in loaded:
            return checked_cooccurrence(loaded[counts_key], loaded[pairs_key], str(path))
    found = sorted(map(str, loaded)) if isinstance(loaded, Mapping) else type(loaded).__name__
    raise ValueError(f"{path}: expected a dict with 'nums' and 'adj' (the authors' *_adj.pkl), got {found}.")


def checked_cooccurrence(counts, pair_counts, source: str) -> LabelCooccurrence:
    """`LabelCooccurrence` of float64 arrays, after checking shapes `(C,)` and `(C, C)` and non-negative values."""
    counts, pair_counts = np.asarray(counts, dtype=np.float64), np.asarray(pair_counts, dtype=np.float64)
    if counts.ndim != 1 or pair_counts.shape != (len(counts), len(counts)):
        raise ValueError(
            f"{source}: label counts must be (C,) and pair counts (C, C), got {counts.shape} and {pair_counts.shape}."
        )
    if not (np.isfinite(counts).all() and np.isfinite(pair_counts).all()) or counts.min() < 0 or pair_counts.min() < 0:
        raise ValueError(f"{source}: label counts must be finite and >= 0.")
    return LabelCooccurrence(counts=counts, pair_counts=pair_counts)
