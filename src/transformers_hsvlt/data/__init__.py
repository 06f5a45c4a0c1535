"""Multi-label datasets in one schema, batching and training augmentation for HSVLT.

Every builder returns a :class:`datasets.DatasetDict` with the features of :func:`multilabel_features`:
``image`` (an :class:`datasets.Image`, decoded lazily), ``labels`` (``Sequence(ClassLabel)``) and, where the
source has one, ``ignore`` (labels left out of scoring). Class names: :func:`get_class_names`.
"""

from .augmentation import TrainAugmentation
from .chance import chance_level_map, expected_random_average_precision
from .coco import load_coco2014
from .collator import MultiLabelCollator
from .custom import load_custom, load_hub
from .digits import DIGIT_CLASS_NAMES, build_digit_canvases
from .dispatch import DEFAULT_SPLITS, DataArguments, load_split, load_splits, load_training_data
from .features import IGNORE_INDEX, get_class_names, multi_hot, multilabel_features
from .label_files import iter_lines, read_label_names
from .listfile import load_list_files
from .nuswide import load_nuswide
from .voc import VOC2007_CLASSES, load_voc2007


__all__ = [
    "DEFAULT_SPLITS",
    "DataArguments",
    "iter_lines",
    "load_split",
    "load_splits",
    "load_training_data",
    "read_label_names",
    "DIGIT_CLASS_NAMES",
    "IGNORE_INDEX",
    "VOC2007_CLASSES",
    "MultiLabelCollator",
    "TrainAugmentation",
    "build_digit_canvases",
    "chance_level_map",
    "expected_random_average_precision",
    "get_class_names",
    "load_coco2014",
    "load_custom",
    "load_hub",
    "load_list_files",
    "load_nuswide",
    "load_voc2007",
    "multi_hot",
    "multilabel_features",
]
