"""Decoding a split's images through the package's safe image loader while examples are read."""

from datasets import Dataset, IterableDataset
from datasets import Image as ImageFeature

from ..images import load_dataset_image


def decode_images_naming_the_file(dataset: Dataset) -> Dataset:
    """The split with its `image` column decoded by `load_image` as examples are read, so that a corrupt, truncated
    or missing image stops training with an error naming the file (Pillow's errors through `datasets` may not)."""
    if dataset.features is None or not isinstance(dataset.features.get("image"), ImageFeature):
        return dataset
    if isinstance(dataset, IterableDataset):  # streamed rows carry undecoded images (see `load_hub_streaming`)
        return dataset.map(_decode_image_column, batched=True)
    return dataset.cast_column("image", ImageFeature(decode=False)).with_transform(_decode_image_column)


def _decode_image_column(batch: dict) -> dict:  # module-level: data-loader workers may have to pickle it
    return {**batch, "image": [load_dataset_image(value) for value in batch["image"]]}
