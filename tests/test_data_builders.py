"""On-disk builders: VOC 2007, COCO 2014, NUS-WIDE, the authors' list files, custom files and load_hub."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Sequence, Value
from PIL import Image as PILImage

from transformers_hsvlt.data import (
    VOC2007_CLASSES,
    get_class_names,
    load_coco2014,
    load_custom,
    load_hub,
    load_list_files,
    load_nuswide,
    load_voc2007,
    multilabel_features,
)


def write_jpeg(path: Path, color=(200, 30, 30), size=(12, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", size, color).save(path, format="JPEG")
    return path


def label_names(dataset, column="labels"):
    """Per-image label names of a split, decoded through its ClassLabel feature."""
    feature = dataset.features[column].feature
    return [feature.int2str(indices) for indices in dataset[column]]


def stored_image(dataset, row):
    """The raw stored value of the image column (no decoding)."""
    return dataset.cast_column("image", Image(decode=False))[row]["image"]


def assert_common_schema(dataset_dict, class_names, with_ignore):
    assert isinstance(dataset_dict, DatasetDict)
    expected = multilabel_features(class_names, with_ignore=with_ignore)
    for split in dataset_dict.values():
        assert split.features == expected
    assert get_class_names(dataset_dict) == list(class_names)


# ---- VOC 2007 --------------------------------------------------------------------------------------------------


def voc_xml(objects):
    body = "".join(
        f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>"
        + (f"<difficult>{difficult}</difficult>" if difficult is not None else "")
        + "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
        for name, difficult in objects
    )
    return f"<annotation><folder>VOC2007</folder><filename>x.jpg</filename>{body}</annotation>"


VOC_IMAGES = {
    "000005": [("chair", 0), ("chair", 1), ("person", 0)],
    "000007": [("car", 0), ("diningtable", 1), ("pottedplant", 1), ("pottedplant", 0)],  # diningtable difficult-only
    "000009": [("tvmonitor", 1), ("bottle", None)],  # <difficult> missing -> 0
    "000012": [("dog", 1)],  # only a difficult object: no labels, ignore=[dog]
}


@pytest.fixture
def vocdevkit(tmp_path):
    voc = tmp_path / "VOCdevkit" / "VOC2007"
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "Annotations").mkdir()
    for image_id, objects in VOC_IMAGES.items():
        (voc / "Annotations" / f"{image_id}.xml").write_text(voc_xml(objects))
        write_jpeg(voc / "JPEGImages" / f"{image_id}.jpg")
    (voc / "ImageSets" / "Main" / "trainval.txt").write_text("000005\n000007\n\n")
    (voc / "ImageSets" / "Main" / "train.txt").write_text("000005\n")
    (voc / "ImageSets" / "Main" / "test.txt").write_text("000009\r\n000012\r\n")
    return tmp_path / "VOCdevkit"


def test_voc2007_labels_difficult_ignore_and_class_order(vocdevkit):
    voc = load_voc2007(vocdevkit)
    assert list(voc) == ["trainval", "test", "train"]  # val.txt absent
    assert_common_schema(voc, VOC2007_CLASSES, with_ignore=True)
    assert VOC2007_CLASSES[0] == "aeroplane" and VOC2007_CLASSES[-1] == "tvmonitor" and len(VOC2007_CLASSES) == 20
    assert label_names(voc["trainval"]) == [["chair", "person"], ["car", "pottedplant"]]
    # difficult chair of 000005 does not count: chair is present through a non-difficult object
    assert label_names(voc["trainval"], "ignore") == [[], ["diningtable"]]
    assert label_names(voc["test"]) == [["bottle"], []]
    assert label_names(voc["test"], "ignore") == [["tvmonitor"], ["dog"]]
    assert voc["train"]["labels"] == [voc["trainval"][0]["labels"]]
    expected = os.path.abspath(vocdevkit / "VOC2007" / "JPEGImages" / "000009.jpg")
    assert stored_image(voc["test"], 0) == {"bytes": None, "path": expected}
    assert voc["test"][0]["image"].size == (12, 10)  # decodes on access


def test_voc2007_accepts_the_voc2007_dir_and_builds_without_images(vocdevkit):
    for jpeg in (vocdevkit / "VOC2007" / "JPEGImages").iterdir():
        jpeg.unlink()
    with pytest.raises(FileNotFoundError, match=r"2 of 2 images do not exist.*000005\.jpg \(from .*trainval\.txt:1\)"):
        load_voc2007(vocdevkit)
    voc = load_voc2007(vocdevkit / "VOC2007", check_files=False)
    assert stored_image(voc["trainval"], 1)["path"].endswith(os.path.join("JPEGImages", "000007.jpg"))


def test_voc2007_errors_name_the_file(vocdevkit, tmp_path):
    annotations = vocdevkit / "VOC2007" / "Annotations"
    (annotations / "000012.xml").write_text(voc_xml([("zebra", 0)]))
    with pytest.raises(ValueError, match=r"000012\.xml: unknown label 'zebra'; expected one of the 20 classes"):
        load_voc2007(vocdevkit)
    (annotations / "000012.xml").write_text(voc_xml([("dog", 2)]))
    with pytest.raises(ValueError, match=r"000012\.xml: object 1 \(dog\): expected <difficult> 0 or 1, got '2'"):
        load_voc2007(vocdevkit)
    (annotations / "000012.xml").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"000012\.xml: annotation of image '000012' \(listed at .*test\.txt:2\)"
    ):
        load_voc2007(vocdevkit)
    with pytest.raises(FileNotFoundError, match="expected a VOCdevkit directory"):
        load_voc2007(tmp_path / "nowhere")


# ---- COCO 2014 -------------------------------------------------------------------------------------------------

COCO_CATEGORIES = [  # listed out of id order, ids not contiguous
    {"id": 90, "name": "toothbrush", "supercategory": "indoor"},
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
]


def coco_json(images, annotations):
    return {
        "info": {},
        "images": [{"id": image_id, "file_name": name, "height": 10, "width": 12} for image_id, name in images],
        "annotations": [
            {"id": n, "image_id": image_id, "category_id": category, "iscrowd": crowd, "bbox": [0, 0, 1, 1]}
            for n, (image_id, category, crowd) in enumerate(annotations)
        ],
        "categories": COCO_CATEGORIES,
    }


@pytest.fixture
def coco_root(tmp_path):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    train_images = [(9, "COCO_train2014_000000000009.jpg"), (25, "COCO_train2014_000000000025.jpg"),
                    (30, "COCO_train2014_000000000030.jpg")]  # fmt: skip
    train_annotations = [(9, 90, 0), (9, 1, 0), (9, 1, 1), (25, 3, 1)]  # 30 has no annotation
    (root / "annotations" / "instances_train2014.json").write_text(
        json.dumps(coco_json(train_images, train_annotations))
    )
    val_images = [(42, "COCO_val2014_000000000042.jpg")]
    (root / "annotations" / "instances_val2014.json").write_text(json.dumps(coco_json(val_images, [(42, 3, 0)])))
    for _, name in train_images:
        write_jpeg(root / "train2014" / name)
    for _, name in val_images:
        write_jpeg(root / "val2014" / name)
    return root


def test_coco2014_class_order_labels_and_unannotated_images(coco_root):
    coco = load_coco2014(coco_root)
    assert list(coco) == ["train", "validation"]
    assert_common_schema(coco, ["person", "car", "toothbrush"], with_ignore=False)  # sorted by category id
    assert label_names(coco["train"]) == [["person", "toothbrush"], ["car"], []]  # crowd counts, image 30 kept
    assert label_names(coco["validation"]) == [["car"]]
    assert stored_image(coco["validation"], 0) == {
        "bytes": None,
        "path": os.path.abspath(coco_root / "val2014" / "COCO_val2014_000000000042.jpg"),
    }


def test_coco2014_builds_from_annotations_alone_and_explicit_splits(coco_root, tmp_path, monkeypatch):
    for image in (coco_root / "train2014").iterdir():
        image.unlink()
    with pytest.raises(FileNotFoundError, match=r"3 of 3 images do not exist.*instances_train2014\.json, image id 9"):
        load_coco2014(coco_root)
    coco = load_coco2014(coco_root, check_files=False)
    assert coco["train"].num_rows == 3 and not os.path.exists(stored_image(coco["train"], 0)["path"])
    monkeypatch.chdir(coco_root)  # relative explicit paths without a root resolve against the working directory
    only_val = load_coco2014(splits={"val": ("annotations/instances_val2014.json", "val2014")})
    assert list(only_val) == ["val"] and label_names(only_val["val"]) == [["car"]]


def test_coco2014_errors_name_file_and_field(coco_root):
    path = coco_root / "annotations" / "instances_val2014.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["category_id"] = 7
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"instances_val2014\.json: annotations\[0\]: expected category_id among "
                                         r"the category ids \[1, 3, 90\], got 7"):  # fmt: skip
        load_coco2014(coco_root, check_files=False)
    data["annotations"][0]["category_id"] = 3
    del data["images"][0]["file_name"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"images\[0\]: expected an object with a 'file_name' field"):
        load_coco2014(coco_root, check_files=False)
    data["images"][0]["file_name"] = "x.jpg"
    data["categories"][2]["name"] = "automobile"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"instances_val2014\.json: expected the categories of .*instances_train2014"):
        load_coco2014(coco_root, check_files=False)
    with pytest.raises(ValueError, match="expected a COCO root directory or explicit `splits`"):
        load_coco2014()


# ---- NUS-WIDE --------------------------------------------------------------------------------------------------


@pytest.fixture
def nuswide_root(tmp_path):
    root = tmp_path / "NUS-WIDE"
    concepts = ["animal", "sky", "water"]
    (root / "Concepts81.txt").parent.mkdir(parents=True)
    (root / "Concepts81.txt").write_text("\n".join(concepts) + "\n")
    lists = {
        "Train": ["actor\\0001_2124494179.jpg", "sky\\0002_11.jpg", "sky\\0003_12.jpg"],
        "Test": ["water\\0004_13.jpg"],
    }
    labels = {
        "Train": {"animal": "1\n0\n0\n", "sky": "1\n1\n0\n", "water": "0 \n1\n0\n"},
        "Test": {"animal": "0\n", "sky": "0\n", "water": "1\n\n"},
    }
    for tag, paths in lists.items():
        (root / "ImageList").mkdir(exist_ok=True)
        (root / "ImageList" / f"{tag}Imagelist.txt").write_text("\r\n".join(paths) + "\r\n")
        for path in paths:
            write_jpeg(root / "Flickr" / path.replace("\\", "/"))
        label_dir = root / "Groundtruth" / "TrainTestLabels"
        label_dir.mkdir(parents=True, exist_ok=True)
        for concept, text in labels[tag].items():
            (label_dir / f"Labels_{concept}_{tag}.txt").write_text(text)
    return root


def test_nuswide_release_layout(nuswide_root, tmp_path):
    nus = load_nuswide(nuswide_root)
    assert list(nus) == ["train", "test"]
    assert_common_schema(nus, ["animal", "sky", "water"], with_ignore=False)
    assert label_names(nus["train"]) == [["animal", "sky"], ["sky", "water"], []]
    assert label_names(nus["test"]) == [["water"]]
    expected = os.path.abspath(nuswide_root / "Flickr" / "actor" / "0001_2124494179.jpg")
    assert stored_image(nus["train"], 0)["path"] == expected
    moved = tmp_path / "images"
    (nuswide_root / "Flickr").rename(moved)
    with pytest.raises(FileNotFoundError, match=r"TrainImagelist\.txt:1\)"):
        load_nuswide(nuswide_root)
    assert load_nuswide(nuswide_root, image_dir=moved)["test"].num_rows == 1


def test_nuswide_errors_name_file_and_line(nuswide_root):
    label_file = nuswide_root / "Groundtruth" / "TrainTestLabels" / "Labels_sky_Train.txt"
    label_file.write_text("1\n1\n")
    with pytest.raises(
        ValueError, match=r"Labels_sky_Train\.txt: expected 3 lines \(one per image of .*TrainImagelist\.txt\), got 2"
    ):
        load_nuswide(nuswide_root)
    label_file.write_text("1\nyes\n0\n")
    with pytest.raises(ValueError, match=r"Labels_sky_Train\.txt:2: expected 0 or 1, got 'yes'"):
        load_nuswide(nuswide_root)
    label_file.unlink()
    with pytest.raises(FileNotFoundError, match=r"Labels_sky_Train\.txt: label file of concept 'sky' does not exist"):
        load_nuswide(nuswide_root)


# ---- authors' list files ---------------------------------------------------------------------------------------


@pytest.fixture
def list_files(tmp_path):
    (tmp_path / "label.txt").write_text("cat\ndog\nbird\n")
    (tmp_path / "train.txt").write_text("img/a.jpg\tcat,dog\nimg/b.jpg\t\n\nimg/c.jpg\tdog, dog ,bird\n")
    (tmp_path / "test.txt").write_text("img/d.jpg\tbird\nimg/e.jpg\tcat,bird\n")
    np.save(tmp_path / "ignore.npy", np.array([[0, 1, 0], [0, 0, 1]], dtype=np.uint8))  # e: bird positive AND ignored
    for name in "abcde":
        write_jpeg(tmp_path / "img" / f"{name}.jpg")
    return tmp_path


def test_list_files_labels_duplicates_and_ignore(list_files):
    data = load_list_files(
        list_files / "label.txt",
        {"train": list_files / "train.txt", "test": list_files / "test.txt"},
        ignore_files={"test": list_files / "ignore.npy"},
    )
    assert_common_schema(data, ["cat", "dog", "bird"], with_ignore=True)
    assert label_names(data["train"]) == [["cat", "dog"], [], ["dog", "bird"]]  # duplicate dog counted once
    assert data["train"]["ignore"] == [[], [], []]
    assert label_names(data["test"]) == [["bird"], ["cat", "bird"]]
    assert label_names(data["test"], "ignore") == [["dog"], ["bird"]]  # kept as given; the collator lets ignore win
    assert stored_image(data["test"], 1)["path"] == os.path.abspath(list_files / "img" / "e.jpg")
    without_ignore = load_list_files(list_files / "label.txt", {"train": list_files / "train.txt"})
    assert "ignore" not in without_ignore["train"].column_names


def test_list_files_image_root_and_errors(list_files, tmp_path):
    other = tmp_path / "lists"
    other.mkdir()
    (other / "train.txt").write_text((list_files / "train.txt").read_text())
    with pytest.raises(FileNotFoundError, match=r"lists.img.a\.jpg \(from .*train\.txt:1\)"):
        load_list_files(list_files / "label.txt", {"train": other / "train.txt"})
    assert (
        load_list_files(list_files / "label.txt", {"train": other / "train.txt"}, image_root=list_files)[
            "train"
        ].num_rows
        == 3
    )

    (other / "bad.txt").write_text("img/a.jpg\tcat\nimg/b.jpg cat\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: expected 'path<TAB>label1,label2,...', got 'img/b.jpg cat'"):
        load_list_files(list_files / "label.txt", {"train": other / "bad.txt"}, check_files=False)
    (other / "bad.txt").write_text("img/a.jpg\tcat,horse\n")
    with pytest.raises(
        ValueError, match=r"bad\.txt:1: unknown label 'horse'; expected one of the 3 classes of .*label\.txt"
    ):
        load_list_files(list_files / "label.txt", {"train": other / "bad.txt"}, check_files=False)
    np.save(other / "ignore.npy", np.zeros((3, 3)))
    with pytest.raises(
        ValueError, match=r"ignore\.npy: expected shape \(2, 3\) \(.*test\.txt lines, classes\), got \(3, 3\)"
    ):
        load_list_files(
            list_files / "label.txt", {"test": list_files / "test.txt"}, ignore_files={"test": other / "ignore.npy"}
        )
    (other / "labels.txt").write_text("cat\ndog\ncat\n")
    with pytest.raises(ValueError, match=r"labels\.txt: label name 'cat' appears twice, on lines 1 and 3"):
        load_list_files(other / "labels.txt", {"train": list_files / "train.txt"})


# ---- custom CSV / JSONL / image folder -------------------------------------------------------------------------


def test_custom_csv_and_jsonl_with_inferred_and_given_classes(tmp_path):
    write_jpeg(tmp_path / "photos" / "a.jpg")
    write_jpeg(tmp_path / "photos" / "b.jpg")
    with open(tmp_path / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "labels", "note"])
        writer.writerow(["photos/a.jpg", "zebra,ant", "x"])
        writer.writerow(["photos/b.jpg", "", "y"])
    (tmp_path / "test.jsonl").write_text(
        json.dumps({"image": "photos/b.jpg", "labels": ["ant", "ant"]}) + "\n\n"
        + json.dumps({"image": "photos/a.jpg", "labels": "bee;zebra", "hard": ["bee"]}) + "\n"
    )  # fmt: skip
    data = load_custom({"train": tmp_path / "train.csv"})
    assert_common_schema(data, ["ant", "zebra"], with_ignore=False)  # inferred, sorted
    assert label_names(data["train"]) == [["ant", "zebra"], []]
    assert stored_image(data["train"], 0)["path"] == os.path.abspath(tmp_path / "photos" / "a.jpg")

    with pytest.raises(ValueError, match=r"test\.jsonl:1: expected a column 'hard', got columns \['image', 'labels'\]"):
        load_custom(tmp_path / "test.jsonl", ignore_column="hard")
    (tmp_path / "classes.txt").write_text("bee\nant\nzebra\n")
    data = load_custom(
        {"test": tmp_path / "test.jsonl"},
        label_separator=";",
        class_names=tmp_path / "classes.txt",
        ignore_column="labels",
    )
    assert_common_schema(data, ["bee", "ant", "zebra"], with_ignore=True)
    assert label_names(data["test"]) == [["ant"], ["bee", "zebra"]]
    data = load_custom(tmp_path / "test.jsonl", label_separator=";", class_names=["zebra", "bee", "ant"])
    assert list(data) == ["train"] and label_names(data["train"]) == [["ant"], ["zebra", "bee"]]


def test_custom_image_folder_metadata(tmp_path):
    for split, rows in {"train": [("a.png", ["cat", "dog"]), ("b.png", ["dog"])], "test": [("c.png", ["cat"])]}.items():
        folder = tmp_path / "folder" / split
        folder.mkdir(parents=True)
        with open(folder / "metadata.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file_name", "labels"])
            for name, labels in rows:
                PILImage.new("L", (5, 5), 128).save(folder / name)
                writer.writerow([name, ",".join(labels)])
    data = load_custom(tmp_path / "folder")
    assert sorted(data) == ["test", "train"]
    assert_common_schema(data, ["cat", "dog"], with_ignore=False)
    assert label_names(data["train"]) == [["cat", "dog"], ["dog"]]
    assert stored_image(data["test"], 0)["path"] == os.path.abspath(tmp_path / "folder" / "test" / "c.png")

    top = tmp_path / "folder" / "train"  # a single folder with its metadata at the top: one "train" split
    assert list(load_custom(top)) == ["train"]
    (top / "metadata.jsonl").write_text("")
    with pytest.raises(ValueError, match=r"expected one metadata file, got 2"):
        load_custom(top)


def test_custom_errors_name_file_line_and_column(tmp_path):
    (tmp_path / "bad.csv").write_text("image,labels\na.jpg,cat,dog\n")
    with pytest.raises(ValueError, match=r"bad\.csv:2: expected 2 fields \(\['image', 'labels'\]\), got more; quote"):
        load_custom(tmp_path / "bad.csv", check_files=False)
    (tmp_path / "bad.jsonl").write_text('{"image": "a.jpg", "labels": [1, 2]}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1, column 'labels': expected label names"):
        load_custom(tmp_path / "bad.jsonl", check_files=False)
    (tmp_path / "bad.jsonl").write_text('{"image": "a.jpg", "labels": ["cat"]}\n{"image": "b.jpg", "labels": [}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: malformed JSON"):
        load_custom(tmp_path / "bad.jsonl", check_files=False)
    (tmp_path / "ok.jsonl").write_text('{"image": "a.jpg", "labels": ["cat", "cow"]}\n')
    with pytest.raises(
        ValueError, match=r"ok\.jsonl:1: unknown label 'cow'; expected one of the 1 classes of class_names"
    ):
        load_custom(tmp_path / "ok.jsonl", class_names=["cat"], check_files=False)
    with pytest.raises(FileNotFoundError, match=r"a\.jpg \(from .*ok\.jsonl:1\)"):
        load_custom(tmp_path / "ok.jsonl")


# ---- load_hub on local directories -----------------------------------------------------------------------------


def test_load_hub_imagefolder_with_name_lists(tmp_path):
    folder = tmp_path / "hubdata"
    rows = [("a.jpg", ["sky", "tree"]), ("b.jpg", []), ("c.jpg", ["tree", "tree"])]
    for name, _ in rows:
        write_jpeg(folder / "train" / name)
    (folder / "train" / "metadata.jsonl").write_text(
        "".join(json.dumps({"file_name": name, "tags": labels, "caption": "x"}) + "\n" for name, labels in rows)
    )
    data = load_hub(str(folder), label_column="tags", cache_dir=str(tmp_path / "cache"))
    assert list(data) == ["train"]
    assert_common_schema(data, ["sky", "tree"], with_ignore=False)
    assert sorted(map(tuple, label_names(data["train"]))) == [(), ("sky", "tree"), ("tree",)]
    assert data["train"][0]["image"].size == (12, 10)


def test_load_hub_save_to_disk_class_labels_indices_and_multi_hot(tmp_path):
    write_jpeg(tmp_path / "a.jpg")
    write_jpeg(tmp_path / "b.jpg")
    paths = [str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")]
    source = Features(
        {
            "img": Value("string"),
            "objects": Sequence(ClassLabel(names=["x", "y", "z"])),
            "hot": Sequence(Value("float32")),
            "ids": Sequence(Value("int64")),
            "difficult": Sequence(ClassLabel(names=["z", "y", "x"])),  # other order: mapped through the names
        }
    )
    columns = {
        "img": paths,
        "objects": [[2, 0], []],
        "hot": [[0, 1, 1], [1, 0, 0]],
        "ids": [[1], [2, 2]],
        "difficult": [[0], [1]],
    }
    DatasetDict({"train": Dataset.from_dict(columns, features=source)}).save_to_disk(tmp_path / "saved")

    data = load_hub(str(tmp_path / "saved"), image_column="img", label_column="objects", ignore_column="difficult")
    assert_common_schema(data, ["x", "y", "z"], with_ignore=True)  # ClassLabel names
    assert label_names(data["train"]) == [["x", "z"], []]
    assert label_names(data["train"], "ignore") == [["z"], ["y"]]
    assert stored_image(data["train"], 1) == {"bytes": None, "path": paths[1]}

    hot = load_hub(str(tmp_path / "saved"), image_column="img", label_column="hot", class_names=["p", "q", "r"])
    assert label_names(hot["train"]) == [["q", "r"], ["p"]]
    ids = load_hub(str(tmp_path / "saved"), image_column="img", label_column="ids", class_names=["p", "q", "r"])
    assert ids["train"]["labels"] == [[1], [2]]
    with pytest.raises(ValueError, match="hold class indices or multi-hot vectors; pass class_names"):
        load_hub(str(tmp_path / "saved"), image_column="img", label_column="ids")
    with pytest.raises(
        ValueError, match=r"\[train\] row 1 column 'ids': expected class indices in \[0, 2\), got \[2, 2\]"
    ):
        load_hub(str(tmp_path / "saved"), image_column="img", label_column="ids", class_names=["p", "q"])
    with pytest.raises(ValueError, match=r"expected a column 'image', got columns"):
        load_hub(str(tmp_path / "saved"), label_column="ids")
