"""The configuration fields every architecture shares (`configuration_family.FamilyConfigMixin`): one definition, one
set of checks, the same for every registered architecture (the test-only toy included)."""

import json

import pytest
from toy_architecture import TOY

from transformers_hsvlt.configuration_family import FamilyConfigMixin
from transformers_hsvlt.registry import architecture_names, get_architecture, register


register(TOY)
ENTRIES = [get_architecture(name) for name in architecture_names()]  # at collection: the built-in ones and the toy
TINY_CONFIGS = {entry.config_class: entry.presets[entry.small_preset].config for entry in ENTRIES}
CONFIG_CLASSES = list(TINY_CONFIGS)
SHARED_FIELDS = ("image_size", "multilabel_loss", "asl_gamma_negative", "asl_gamma_positive", "asl_clip")


def tiny(config_class, **values):
    return config_class(**{**TINY_CONFIGS[config_class], "id2label": {0: "cat", 1: "dog"}, **values})


@pytest.mark.parametrize("config_class", CONFIG_CLASSES, ids=lambda cls: cls.__name__)
def test_every_config_has_the_shared_fields_once(config_class):
    assert issubclass(config_class, FamilyConfigMixin)
    config = tiny(config_class)
    assert all(name in config.to_dict() for name in SHARED_FIELDS)
    assert config.problem_type == "multi_label_classification" and config.label2id == {"cat": 0, "dog": 1}
    assert not any(name in vars(config_class).get("__annotations__", {}) for name in SHARED_FIELDS[2:])


@pytest.mark.parametrize("config_class", CONFIG_CLASSES, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize(
    "values, message",
    [
        ({"image_size": 0}, "image_size must be >= 1, got 0"),
        ({"multilabel_loss": "focal"}, "multilabel_loss must be 'bce' or 'asl', got 'focal'"),
        ({"asl_gamma_negative": -1.0}, "asl_gamma_negative must be >= 0, got -1.0"),
        ({"asl_gamma_positive": -2}, "asl_gamma_positive must be >= 0, got -2"),
        ({"asl_clip": 1.0}, r"asl_clip must be in \[0, 1\), got 1.0"),
        ({"id2label": {}}, "id2label is empty"),
        ({"problem_type": "single_label_classification"}, "problem_type must be 'multi_label_classification'"),
    ],
)
def test_the_shared_checks_are_the_same_for_every_architecture(config_class, values, message):
    with pytest.raises(ValueError, match=f"{config_class.__name__}.{message}"):
        tiny(config_class, **values)


@pytest.mark.parametrize("config_class", CONFIG_CLASSES, ids=lambda cls: cls.__name__)
def test_saved_config_files_load(config_class, tmp_path):
    config = tiny(config_class, multilabel_loss="asl", asl_clip=0.1)
    config.save_pretrained(tmp_path)
    assert config_class.from_pretrained(tmp_path).to_dict() == config.to_dict()
    saved = json.loads((tmp_path / "config.json").read_text())
    for name in SHARED_FIELDS[1:]:  # a file written before the loss fields existed gets the defaults
        del saved[name]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = config_class.from_pretrained(tmp_path)
    assert (loaded.asl_clip, loaded.multilabel_loss) == (0.05, config_class().multilabel_loss)
