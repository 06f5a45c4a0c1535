"""
Label-name embeddings: the label side of HSVLT.

HSVLT feeds one text-encoder vector per class name to every stage of its visual hierarchy. This module computes
those vectors from a `label.txt`-style list of names with any Hugging Face text encoder, and saves / loads them as a
`(num_labels, width)` float32 `.npy` array.

The default reproduces the authors' `scripts/embedding.py` (inherited from TSFormer) with `bert-base-uncased`:

```python
>>> from transformers_hsvlt.data import read_label_names
>>> from transformers_hsvlt.label_embeddings import embed_label_names, save_label_embeddings

>>> names = read_label_names("data/voc2007/label.txt")
>>> embeddings = embed_label_names(names)  # (20, 768) float32, pooling="authors"
>>> save_label_embeddings(embeddings, "data/voc2007/bert.npy")
```
"""

import os
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging

from .weights.state_dict import check_pretrained_name


logger = logging.get_logger(__name__)


POOLING_CHOICES = ("authors", "cls", "mean", "sentence-transformers")

VOC_NAME_REWRITES = {
    "diningtable": "dining table",
    "pottedplant": "potted plant",
    "tvmonitor": "tv monitor",
}
"""Pascal VOC class names written as one word, rewritten to words the text encoder knows (as the authors do)."""


def embed_label_names(
    names: Sequence[str],
    encoder: str | os.PathLike | tuple[PreTrainedModel, PreTrainedTokenizerBase] = "bert-base-uncased",
    pooling: str = "authors",
    batch_size: int = 64,
    device: str | torch.device | None = None,
    show_progress: bool | None = None,
    rewrite_voc_names: bool = True,
) -> np.ndarray:
    r"""
    Embed class names with a text encoder: one vector per name, the label input of HSVLT.

    Args:
        names (`Sequence[str]`):
            The class names, in label-id order (e.g. the lines of `label.txt`). Surrounding whitespace is ignored;
            empty and duplicate names are rejected.
        encoder (`str`, `os.PathLike` or `(model, tokenizer)`, *optional*, defaults to `"bert-base-uncased"`):
            A Hub id or local directory loaded with `AutoModel` and `AutoTokenizer`, or an already-loaded
            `(model, tokenizer)` pair. The model must be a text model returning `last_hidden_state`.
        pooling (`str`, *optional*, defaults to `"authors"`):
            How a name's token vectors become one vector; all read the last hidden layer.

            - `"authors"`: the authors' `scripts/embedding.py`. The input is the [CLS] id followed by the name's
              word-pieces, without [SEP] (what BERT's tokenizer makes of the text `"[CLS] " + name`). A name that
              is a single word-piece is embedded by that word-piece's vector (position 1); any longer name by the
              [CLS] vector (position 0). Token type ids are left at the model's default, 0: the authors' script
              builds all-ones "segment ids" but passes them positionally, `model(input_ids, segment_ids)`, where
              `BertModel.forward` takes the attention mask, so they only set the (already all-ones) mask.
            - `"cls"`: the vector at position 0 of the tokenizer's standard input (`[CLS] name [SEP]` for BERT).
            - `"mean"`: the attention-masked mean over all tokens of the standard input, special tokens included.
            - `"sentence-transformers"`: `"mean"` followed by L2 normalisation, the pipeline of sentence-transformers
              models such as all-MiniLM-L6-v2.
        batch_size (`int`, *optional*, defaults to 64):
            Number of names encoded per forward pass. Batches are right-padded and masked, so the result does not
            depend on it (up to float rounding).
        device (`str` or `torch.device`, *optional*):
            Device to run the encoder on; the encoder is moved there. Defaults to the device the encoder is on (the
            CPU for an encoder loaded here).
        show_progress (`bool`, *optional*):
            Show a tqdm progress bar over batches. Defaults to showing it when there is more than one batch.
        rewrite_voc_names (`bool`, *optional*, defaults to `True`):
            Rewrite the Pascal VOC names `diningtable`, `pottedplant` and `tvmonitor` to `dining table`,
            `potted plant` and `tv monitor` before encoding, as the authors do (see `VOC_NAME_REWRITES`). Only exact
            matches are rewritten; other names are unaffected.

    Returns:
        `np.ndarray` of shape `(len(names), hidden_size)` and dtype float32.

    Raises:
        `TypeError`: `names` is a single string or holds a non-string.
        `ValueError`: no names, an empty or duplicate name, a name the tokenizer turns into no token, an unknown
            `pooling`, an encoder that is not a text model, or NaN/inf in the encoder's output.
    """
    texts = _prepare_texts(names, rewrite_voc_names)
    if pooling not in POOLING_CHOICES:
        raise ValueError(f"Unknown pooling {pooling!r}; choose one of {', '.join(map(repr, POOLING_CHOICES))}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    model, tokenizer = _resolve_encoder(encoder)
    _check_tokenizer(tokenizer, pooling, texts)
    if device is not None:
        model.to(device)
    device = next(model.parameters()).device
    if show_progress is None:
        show_progress = len(texts) > batch_size

    starts = range(0, len(texts), batch_size)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            batches = [
                _POOLINGS[pooling](model, tokenizer, texts[start : start + batch_size], device)
                for start in tqdm(starts, desc="Embedding label names", unit="batch", disable=not show_progress)
            ]
    finally:
        model.train(was_training)
    embeddings = torch.cat(batches).float().cpu().numpy()

    bad_rows = _non_finite_rows(embeddings)
    if bad_rows:
        bad_names = ", ".join(repr(texts[row]) for row in bad_rows)
        raise ValueError(f"The encoder {_describe(encoder)} produced NaN or inf embeddings for {bad_names}.")
    return embeddings


def save_label_embeddings(embeddings: np.ndarray | torch.Tensor, path: str | os.PathLike) -> Path:
    """
    Save a `(num_labels, width)` embedding matrix as a float32 `.npy` file (parent directories are created) and
    return its path. Rejects anything that is not a finite, non-empty 2-D numeric array.
    """
    path = Path(path)
    if path.suffix != ".npy":
        raise ValueError(f"Label embeddings are saved as .npy; got the path {path} (suffix {path.suffix!r}).")
    if isinstance(embeddings, torch.Tensor):
        embeddings = embeddings.detach().cpu().numpy()
    array = _as_embedding_matrix(np.asarray(embeddings), source="The label embeddings to save")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array, allow_pickle=False)
    return path


def load_label_embeddings(
    path: str | os.PathLike, expected_num_labels: int | None = None, expected_width: int | None = None
) -> np.ndarray:
    """
    Load a `(num_labels, width)` label-embedding matrix from a `.npy` file as float32 (pickled arrays are refused).

    Args:
        path (`str` or `os.PathLike`):
            The `.npy` file, e.g. one written by `save_label_embeddings` or the authors' `bert.npy`.
        expected_num_labels (`int`, *optional*):
            Required number of rows (the model's number of labels).
        expected_width (`int`, *optional*):
            Required number of columns (the model's `config.label_embedding_size`).

    Raises:
        `FileNotFoundError`: `path` does not exist.
        `ValueError`: the file is not a plain numeric `.npy` array, is not 2-D, has another shape than expected, or
            holds NaN/inf. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Label embeddings file {path} does not exist.")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{path} is not a plain numeric .npy array (pickled data is refused): {error}") from error
    if not isinstance(array, np.ndarray):  # an .npz archive
        raise ValueError(f"{path} is an .npz archive; expected a single .npy array of shape (num_labels, width).")
    array = _as_embedding_matrix(array, source=str(path))
    expected_shape = (expected_num_labels, expected_width)
    if any(expected not in (None, got) for expected, got in zip(expected_shape, array.shape, strict=True)):
        shape_text = ", ".join("any" if size is None else str(size) for size in expected_shape)
        raise ValueError(
            f"{path}: expected label embeddings of shape ({shape_text}) (num_labels, width), got {array.shape}."
        )
    return array


def _prepare_texts(names: Sequence[str], rewrite_voc_names: bool) -> list[str]:
    """Validate the names and return the texts to encode (stripped and, optionally, VOC names rewritten)."""
    if isinstance(names, str):
        raise TypeError(f"names must be a sequence of label names, got the single string {names!r}.")
    texts = []
    for index, name in enumerate(names):
        if not isinstance(name, str):
            raise TypeError(f"Label names must be strings; name {index} is {type(name).__name__} {name!r}.")
        text = name.strip()
        if not text:
            raise ValueError(f"Label name {index} is empty or whitespace only: {name!r}.")
        texts.append(VOC_NAME_REWRITES.get(text, text) if rewrite_voc_names else text)
    if not texts:
        raise ValueError("No label names given: expected at least one.")
    duplicates = _duplicates(texts)
    if duplicates:
        described = "; ".join(
            f"{text!r} from {' and '.join(f'{names[index]!r} (index {index})' for index in indices)}"
            for text, indices in duplicates.items()
        )
        raise ValueError(f"Duplicate label names (each class needs its own name): {described}.")
    return texts


def _duplicates(items: list[str]) -> dict[str, list[int]]:
    """Map each item occurring more than once to the indices where it occurs."""
    indices: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        indices.setdefault(item, []).append(index)
    return {item: where for item, where in indices.items() if len(where) > 1}


def _resolve_encoder(encoder) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Return `(model, tokenizer)`, loading them when `encoder` is a Hub id or directory; check it is a text model."""
    if isinstance(encoder, (str, os.PathLike)):
        return _load_encoder(encoder)
    if not (isinstance(encoder, tuple) and len(encoder) == 2):
        raise TypeError(
            f"encoder must be a Hub id, a directory or a (model, tokenizer) pair, got {type(encoder).__name__}."
        )
    model, tokenizer = encoder
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        raise ValueError(
            f"encoder must be a (model, tokenizer) pair; its second item is a {type(tokenizer).__name__}, "
            "not a transformers tokenizer."
        )
    _check_text_model(model, encoder)
    return model, tokenizer


def _load_encoder(encoder: str | os.PathLike) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a text encoder and its tokenizer from a Hub id or directory."""
    check_pretrained_name(encoder, "The text encoder")
    with _naming_encoder_on_error(encoder):
        model = AutoModel.from_pretrained(encoder, trust_remote_code=False)
    _check_text_model(model, encoder)
    with _naming_encoder_on_error(encoder):
        tokenizer = AutoTokenizer.from_pretrained(encoder, trust_remote_code=False)
    return model, tokenizer


@contextmanager
def _naming_encoder_on_error(encoder: str | os.PathLike):
    """Re-raise loading errors (not found, no network, unknown model type...) with the encoder's name in front."""
    try:
        yield
    except OSError as error:
        raise OSError(f"Could not load the text encoder {str(encoder)!r}: {error}") from error
    except ValueError as error:
        raise ValueError(f"Could not load the text encoder {str(encoder)!r}: {error}") from error


def _check_text_model(model, encoder) -> None:
    """Raise a `ValueError` unless `model` is a PyTorch model taking token ids."""
    main_input = getattr(model, "main_input_name", None)
    if not isinstance(model, torch.nn.Module) or main_input != "input_ids":
        raise ValueError(
            f"The encoder {_describe(encoder)} is not a text model: label names need a model taking input_ids "
            f"(such as bert-base-uncased), got {type(model).__name__} whose main input is {main_input!r}."
        )


def _check_tokenizer(tokenizer: PreTrainedTokenizerBase, pooling: str, texts: list[str]) -> None:
    """
    Raise a `ValueError` if `pooling` needs a [CLS] token the tokenizer lacks or a name yields no token; warn about
    names made only of unknown tokens.
    """
    if pooling == "authors" and tokenizer.cls_token_id is None:
        raise ValueError(
            f"pooling='authors' needs a tokenizer with a [CLS] token; {type(tokenizer).__name__} has none. "
            "Use pooling='mean' or 'sentence-transformers' with this encoder."
        )
    word_pieces = tokenizer(texts, add_special_tokens=False)["input_ids"]
    empty = [text for text, pieces in zip(texts, word_pieces, strict=True) if not pieces]
    if empty:
        raise ValueError(f"The tokenizer turns these label names into no token at all: {', '.join(map(repr, empty))}.")
    unknown = [text for text, pieces in zip(texts, word_pieces, strict=True) if set(pieces) == {tokenizer.unk_token_id}]
    if unknown:
        logger.warning(
            f"{len(unknown)} of {len(texts)} label names are unknown to the tokenizer (only {tokenizer.unk_token} "
            f"tokens), so their embeddings carry nothing of the name: {', '.join(map(repr, unknown))}. Check the "
            "encoder's vocabulary."
        )


def _describe(encoder) -> str:
    """A short name of the encoder for error messages."""
    if isinstance(encoder, (str, os.PathLike)):
        return repr(str(encoder))
    return type(encoder[0]).__name__


def _last_hidden_state(model: PreTrainedModel, **inputs: torch.Tensor) -> torch.Tensor:
    """Run the encoder and return its last hidden layer `(batch, tokens, width)`."""
    hidden = getattr(model(**inputs), "last_hidden_state", None)
    if hidden is None:
        raise ValueError(
            f"{type(model).__name__} returns no last_hidden_state; pass a base text model (AutoModel), not a model "
            "with a task head."
        )
    return hidden


def _authors_pooling(model, tokenizer, texts: list[str], device: torch.device) -> torch.Tensor:
    """`pooling="authors"`: [CLS] + word-pieces, no [SEP]; a single word-piece's vector, else the [CLS] vector."""
    word_pieces = tokenizer(texts, add_special_tokens=False)["input_ids"]
    sequences = [[tokenizer.cls_token_id, *pieces] for pieces in word_pieces]
    length = max(map(len, sequences))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.tensor([ids + [pad_id] * (length - len(ids)) for ids in sequences], device=device)
    attention_mask = torch.tensor([[1] * len(ids) + [0] * (length - len(ids)) for ids in sequences], device=device)
    hidden = _last_hidden_state(model, input_ids=input_ids, attention_mask=attention_mask)
    positions = torch.tensor([1 if len(pieces) == 1 else 0 for pieces in word_pieces], device=device)
    return hidden[torch.arange(len(texts), device=device), positions]


def _standard_hidden_states(model, tokenizer, texts: list[str], device: torch.device):
    """Encode the texts with the tokenizer's standard special tokens; return hidden states and attention mask."""
    inputs = tokenizer(texts, padding=True, return_tensors="pt").to(device)
    return _last_hidden_state(model, **inputs), inputs["attention_mask"]


def _cls_pooling(model, tokenizer, texts: list[str], device: torch.device) -> torch.Tensor:
    """`pooling="cls"`: the vector at position 0 of the standard input."""
    hidden, _ = _standard_hidden_states(model, tokenizer, texts, device)
    return hidden[:, 0]


def _mean_pooling(model, tokenizer, texts: list[str], device: torch.device) -> torch.Tensor:
    """`pooling="mean"`: attention-masked mean over the tokens of the standard input, special tokens included."""
    hidden, attention_mask = _standard_hidden_states(model, tokenizer, texts, device)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def _sentence_transformers_pooling(model, tokenizer, texts: list[str], device: torch.device) -> torch.Tensor:
    """`pooling="sentence-transformers"`: masked mean, then L2 normalisation (sentence-transformers' default)."""
    return torch.nn.functional.normalize(_mean_pooling(model, tokenizer, texts, device), p=2, dim=1)


_POOLINGS = {
    "authors": _authors_pooling,
    "cls": _cls_pooling,
    "mean": _mean_pooling,
    "sentence-transformers": _sentence_transformers_pooling,
}


def _as_embedding_matrix(array: np.ndarray, source: str) -> np.ndarray:
    """Check `array` is a finite, non-empty 2-D real array and return it as float32; errors start with `source`."""
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{source}: expected a real-valued array, got dtype {array.dtype}.")
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"{source}: expected a non-empty 2-D array (num_labels, width), got shape {array.shape}.")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, reported below
        array = array.astype(np.float32)
    bad_rows = _non_finite_rows(array)
    if bad_rows:
        raise ValueError(f"{source}: NaN or inf (after conversion to float32) in the rows of labels {bad_rows}.")
    return array


def _non_finite_rows(array: np.ndarray) -> list[int]:
    """Indices of the rows of a 2-D array holding NaN or inf."""
    return np.flatnonzero(~np.isfinite(array).all(axis=1)).tolist()


__all__ = [
    "POOLING_CHOICES",
    "VOC_NAME_REWRITES",
    "embed_label_names",
    "load_label_embeddings",
    "save_label_embeddings",
]
