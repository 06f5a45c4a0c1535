"""The package's layout contract: remote code without symlinks, one identity per class, every architecture
registered with the Auto classes and exported from the package root."""

import ast
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification
from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING

import transformers_hsvlt
from transformers_hsvlt import HSVLTForMultiLabelClassification, MultiLabelImageProcessor
from transformers_hsvlt.checkpoints import load_checkpoint
from transformers_hsvlt.hub import prepare_for_push
from transformers_hsvlt.modeling_family import FamilyPreTrainedModel
from transformers_hsvlt.registry import architecture_names, get_architecture


PACKAGE = Path(transformers_hsvlt.__file__).parent
BUILTIN = ("hsvlt", "msrn", "patchct", "pvlr")


def test_no_symlinks_in_the_package():
    assert [str(path) for path in PACKAGE.rglob("*") if path.is_symlink()] == []


def remote_code_modules() -> list[Path]:
    """Every module some architecture's `auto_map` names, and the siblings they import."""
    pending = [
        reference.split(".")[0]
        for name in BUILTIN
        for reference in get_architecture(name).base_model_class.remote_code_auto_map.values()
    ]
    pending += ["image_processing_multilabel", "pipeline_multilabel"]
    seen: set[str] = set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
        pending += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1]
    return sorted(PACKAGE / f"{module}.py" for module in seen)


THIRD_PARTY_ALLOWED = {"torch", "transformers", "huggingface_hub", "numpy", "PIL"}
"""What remote code may import besides the standard library: torch, transformers and what transformers requires."""


def imported_roots(tree: ast.Module) -> set[str]:
    """The top-level packages an absolute import of `tree` names."""
    roots = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    roots |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0
    }
    return roots


def test_remote_code_modules_are_siblings_importing_only_torch_transformers_and_each_other():
    modules = remote_code_modules()
    assert {path.name for path in modules} >= {"modeling_msrn.py", "clip_towers.py", "modeling_family.py"}
    for path in modules:
        assert path.parent == PACKAGE
        tree = ast.parse(path.read_text(encoding="utf-8"))
        relative_levels = {node.level for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} - {0}
        assert relative_levels <= {1}, f"{path.name}: a relative import beyond its folder"
        foreign = imported_roots(tree) - THIRD_PARTY_ALLOWED - set(sys.stdlib_module_names)
        assert not foreign, f"{path.name} imports {sorted(foreign)}"


@pytest.mark.parametrize("name", BUILTIN)
def test_every_architecture_is_one_family_with_one_identity(name):
    architecture = get_architecture(name)
    assert issubclass(architecture.base_model_class, FamilyPreTrainedModel)
    assert issubclass(architecture.model_class, FamilyPreTrainedModel)
    for cls in (architecture.config_class, architecture.base_model_class, architecture.model_class):
        assert getattr(transformers_hsvlt, cls.__name__) is cls
        assert cls.__module__ == f"transformers_hsvlt.{cls.__module__.rsplit('.', 1)[-1]}"


@pytest.mark.parametrize("name", BUILTIN)
def test_every_architecture_is_registered_with_the_auto_classes(name):
    architecture = get_architecture(name)
    config = AutoConfig.for_model(name)
    assert type(config) is architecture.config_class
    assert AutoModel._model_mapping[architecture.config_class] is architecture.base_model_class
    assert AutoModelForImageClassification._model_mapping[architecture.config_class] is architecture.model_class
    assert IMAGE_PROCESSOR_MAPPING[architecture.config_class]["pil"] is MultiLabelImageProcessor


def test_builtin_architectures_come_first():
    assert architecture_names()[: len(BUILTIN)] == list(BUILTIN)


def test_the_family_image_processor_has_a_family_name_and_checkpoints_saved_before_still_load(tmp_path):
    """New checkpoints ship `image_processing_multilabel.py` / `MultiLabelImageProcessor`; a checkpoint saved before
    the rename (`image_processing_hsvlt.HSVLTImageProcessor` in `preprocessor_config.json`) still loads, through the
    toolkit and through transformers' remote code."""
    torch.manual_seed(0)
    model = HSVLTForMultiLabelClassification(tiny_config()).eval()
    processor = MultiLabelImageProcessor(size={"height": 64, "width": 64})
    prepare_for_push(model, processor, tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "MultiLabelImageProcessor"
    assert saved["auto_map"]["AutoImageProcessor"] == "image_processing_multilabel.MultiLabelImageProcessor"
    shipped = {path.name for path in tmp_path.glob("*.py")}
    assert {"image_processing_multilabel.py", "image_conversion_multilabel.py"} <= shipped
    assert not {"image_processing_hsvlt.py", "image_conversion_hsvlt.py"} & shipped

    shutil.copy(tmp_path / "image_processing_multilabel.py", tmp_path / "image_processing_hsvlt.py")
    (tmp_path / "image_processing_multilabel.py").unlink()
    saved["image_processor_type"] = "HSVLTImageProcessor"
    saved["auto_map"]["AutoImageProcessor"] = "image_processing_hsvlt.HSVLTImageProcessor"
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(saved))
    image = Image.new("RGB", (80, 50), "orange")
    expected = processor(image, return_tensors="pt")["pixel_values"]

    _, loaded = load_checkpoint(str(tmp_path), "cpu")
    torch.testing.assert_close(loaded(image, return_tensors="pt")["pixel_values"], expected)
    remote = AutoImageProcessor.from_pretrained(str(tmp_path), trust_remote_code=True)
    assert type(remote).__module__.endswith("image_processing_hsvlt")
    torch.testing.assert_close(remote(image, return_tensors="pt")["pixel_values"], expected)
