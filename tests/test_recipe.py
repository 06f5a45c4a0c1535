"""The recipe resolved once (`training.recipe`): preset values, every field overridable by its flag, and the
learning-rate multipliers given to `Trainer`'s own optimizer factory, so that `--optim` keeps working."""

import json

import pytest
import torch
from transformers import Trainer, TrainingArguments
from transformers.optimization import Adafactor

from transformers_hsvlt.cli import train as train_cli
from transformers_hsvlt.registry import get_architecture
from transformers_hsvlt.training import parse_train_arguments
from transformers_hsvlt.training.recipe import RECIPE_FIELDS, Recipe, resolve_recipe
from transformers_hsvlt.training.trainer import FamilyTrainer


def recipe_of(*flags: str) -> Recipe:
    model_args, _, _, _ = parse_train_arguments(["--model", "msrn", "--dataset", "voc2007", "--data_dir", "x", *flags])
    return resolve_recipe(get_architecture("msrn"), model_args)


def test_the_preset_gives_every_field_and_every_flag_overrides_it():
    authors = recipe_of()
    assert (authors.lr_schedule, authors.lr_milestones, authors.lr_gamma) == ("multistep", (30,), 0.1)
    assert authors.lr_multipliers == {"msrn.backbone.": 0.1, "msrn.level_buffers.": 0.1}  # from microsoft/resnet-101
    assert recipe_of("--backbone", "none").lr_multipliers == {}  # from scratch: every part at the full rate
    overridden = recipe_of(
        "--lr_milestones", "40,30", "--lr_gamma", "0.5", "--warmup_epochs", "1.5", "--plateau_factor", "0.2",
        "--plateau_patience", "3", "--early_stopping_patience", "2", "--lr_multipliers", "msrn.backbone.=0.01",
        "--lr_schedule", "warmup_plateau",
    )  # fmt: skip
    assert overridden == Recipe(
        lr_schedule="warmup_plateau",
        warmup_epochs=1.5,
        plateau_factor=0.2,
        plateau_patience=3,
        lr_milestones=(30, 40),
        lr_gamma=0.5,
        early_stopping_patience=2,
        lr_multipliers={"msrn.backbone.": 0.01},
    )
    assert set(RECIPE_FIELDS) == set(overridden.to_dict())  # every field was set from the command line above


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr_milestones", "thirty"], "--lr_milestones must be comma-separated epochs"),
        (["--lr_milestones", "none"], "--lr_schedule multistep needs --lr_milestones"),
        (["--lr_gamma", "0"], "--lr_gamma must be > 0, got 0.0"),
        (["--lr_multipliers", "msrn.backbone."], "--lr_multipliers must be 'prefix=multiplier' pairs"),
        (["--plateau_patience", "0"], "--plateau_patience must be >= 1, got 0"),
    ],
)
def test_bad_recipe_flags_are_one_line_errors(flags, message):
    with pytest.raises(ValueError, match=message):
        recipe_of(*flags)


class TwoParts(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Linear(4, 4)
        self.head = torch.nn.Linear(4, 2)


@pytest.mark.parametrize(
    "optim, optimizer_class", [("sgd", torch.optim.SGD), ("adamw_torch", torch.optim.AdamW), ("adafactor", Adafactor)]
)
def test_lr_multipliers_go_through_the_optimizer_factory(optim, optimizer_class, tmp_path):
    args = TrainingArguments(
        output_dir=str(tmp_path), optim=optim, learning_rate=0.1, weight_decay=0.01, report_to=[], use_cpu=True
    )
    model = TwoParts()
    trainer = FamilyTrainer(model=model, args=args, recipe=Recipe(lr_multipliers={"backbone.": 0.1}))
    optimizer = trainer.create_optimizer()
    assert type(optimizer) is type(Trainer(model=TwoParts(), args=args).create_optimizer()) is optimizer_class
    rates = {id(parameter): group["lr"] for group in optimizer.param_groups for parameter in group["params"]}
    decays = {id(parameter): group["weight_decay"] for group in optimizer.param_groups for parameter in group["params"]}
    assert rates == {
        id(model.backbone.weight): pytest.approx(0.01),
        id(model.backbone.bias): pytest.approx(0.01),
        id(model.head.weight): pytest.approx(0.1),
        id(model.head.bias): pytest.approx(0.1),
    }
    assert (decays[id(model.head.weight)], decays[id(model.head.bias)]) == (0.01, 0.0)


@pytest.mark.slow
def test_the_run_records_the_resolved_recipe(tmp_path):
    output = tmp_path / "run"
    arguments = ["--model", "msrn", "--digits_train_size", "16", "--digits_test_size", "8", "--max_steps", "1"]
    arguments += ["--lr_milestones", "5,9", "--output_dir", str(output), "--quiet"]
    assert train_cli.main(arguments) == 0
    recipe = json.loads((output / "run_record.json").read_text())["recipe"]
    assert (recipe["lr_schedule"], recipe["lr_milestones"], recipe["lr_multipliers"]) == ("multistep", [5, 9], {})
    assert "| lr_milestones | [5, 9] |" in (output / "README.md").read_text()
