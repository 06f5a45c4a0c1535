"""PASCAL VOC 2007 from a VOCdevkit directory."""

from __future__ import annotations

import os
from xml.etree import ElementTree

from datasets import DatasetDict

from .label_files import iter_lines
from .records import ClassIndex, ImageRecord, PathLike, records_to_dataset


#: The 20 VOC classes in the standard (alphabetical) order.
VOC2007_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

#: The split files of ``ImageSets/Main`` read when present, in this order.
VOC_SPLITS = ("trainval", "test", "train", "val")


def load_voc2007(root: PathLike, *, check_files: bool = True) -> DatasetDict:
    """Load PASCAL VOC 2007 classification from a VOCdevkit.

    Args:
        root: the ``VOCdevkit`` directory (holding ``VOC2007/``) or the ``VOC2007`` directory itself, with
            ``ImageSets/Main/<split>.txt`` (one image id per line), ``Annotations/<id>.xml`` and
            ``JPEGImages/<id>.jpg``.
        check_files: check that every listed JPEG exists.

    Returns:
        The splits among ``trainval``, ``test``, ``train`` and ``val`` whose split file exists, with the
        20 classes of :data:`VOC2007_CLASSES` and an ``ignore`` column: a class present in an image only
        through ``difficult=1`` objects is put in ``ignore`` for that image, not in ``labels`` (the
        standard VOC protocol, which leaves those entries out of the class's AP). Objects marked
        ``truncated`` or ``occluded`` count as present.
    """
    voc_dir = _find_voc2007_dir(os.fspath(root))
    main_dir = os.path.join(voc_dir, "ImageSets", "Main")
    split_files = {name: os.path.join(main_dir, f"{name}.txt") for name in VOC_SPLITS}
    split_files = {name: path for name, path in split_files.items() if os.path.isfile(path)}
    if not split_files:
        raise FileNotFoundError(f"{main_dir}: expected at least one of {[f'{s}.txt' for s in VOC_SPLITS]}, found none")
    classes = ClassIndex(VOC2007_CLASSES, source="VOC2007_CLASSES")
    parsed: dict[str, ImageRecord] = {}  # trainval, train and val share images: parse each XML once
    splits = {}
    for name, split_file in split_files.items():
        records = []
        for line_number, line in iter_lines(split_file):
            image_id = _parse_image_id(line, f"{split_file}:{line_number}")
            if image_id not in parsed:
                parsed[image_id] = _read_annotation(voc_dir, image_id, classes, f"{split_file}:{line_number}")
            records.append(parsed[image_id])
        splits[name] = records_to_dataset(records, classes.names, with_ignore=True, check_files=check_files)
    return DatasetDict(splits)


def _find_voc2007_dir(root: str) -> str:
    for candidate in (os.path.join(root, "VOC2007"), root):
        if os.path.isdir(os.path.join(candidate, "ImageSets", "Main")):
            return candidate
    raise FileNotFoundError(
        f"{root}: expected a VOCdevkit directory (with VOC2007/ImageSets/Main) or a VOC2007 directory "
        "(with ImageSets/Main), found neither"
    )


def _parse_image_id(line: str, origin: str) -> str:
    fields = line.split()
    if len(fields) != 1:
        raise ValueError(f"{origin}: expected a single image id, got {line!r}")
    return fields[0]


def _read_annotation(voc_dir: str, image_id: str, classes: ClassIndex, origin: str) -> ImageRecord:
    """Parse ``Annotations/<image_id>.xml`` into the record of that image."""
    xml_path = os.path.join(voc_dir, "Annotations", f"{image_id}.xml")
    if not os.path.isfile(xml_path):
        raise FileNotFoundError(f"{xml_path}: annotation of image {image_id!r} (listed at {origin}) does not exist")
    try:
        tree = ElementTree.parse(xml_path)
    except ElementTree.ParseError as error:
        raise ValueError(f"{xml_path}: malformed XML ({error})") from None
    present, difficult = [], []
    for number, obj in enumerate(tree.getroot().iter("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise ValueError(f"{xml_path}: object {number}: expected a <name>, got none")
        flag = (obj.findtext("difficult") or "0").strip()
        if flag not in ("0", "1"):
            raise ValueError(f"{xml_path}: object {number} ({name}): expected <difficult> 0 or 1, got {flag!r}")
        (difficult if flag == "1" else present).append(name)
    labels = classes.encode(present, origin=xml_path)
    ignore = sorted(set(classes.encode(difficult, origin=xml_path)) - set(labels))
    image_path = os.path.abspath(os.path.join(voc_dir, "JPEGImages", f"{image_id}.jpg"))
    return ImageRecord(image=image_path, labels=labels, ignore=ignore, origin=origin)
