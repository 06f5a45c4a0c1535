import os
import signal


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from transformers_hsvlt.configuration_hsvlt import HSVLTConfig  # noqa: E402


def tiny_config(**overrides) -> HSVLTConfig:
    """A tiny HSVLT (4 stages, widths 8-32, 5 labels) that runs in milliseconds on CPU. Its initialiser std suits its
    widths (~1/sqrt(width)); ConvNeXt's 0.02 is meant for widths in the hundreds."""
    values = dict(
        initializer_range=0.2,
        depths=[1, 1, 2, 1],
        hidden_sizes=[8, 16, 24, 32],
        label_embedding_size=12,
        id2label={index: name for index, name in enumerate(["cat", "dog", "person", "car", "tree"])},
        image_size=64,
    )
    values.update(overrides)
    return HSVLTConfig(**values)


@pytest.fixture
def config():
    return tiny_config()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread on a shared 2-core machine: a module that runs many of them asks for
    this (`pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _keep_thread_count():
    """The commands set torch's thread count (`--threads auto`, the default): a test that runs one in this process
    leaves the count as it found it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def assert_same_update(before: dict, after: dict, expected_after: dict) -> None:
    """`after - before` equals `expected_after - before` for every floating-point tensor of `expected_after`, at any
    thread count. Comparing the updates (not the weights) sees a factor 2 on a small update. Two roundings bound the
    per-element tolerance: each weight is stored to half an ulp of its magnitude, so the recovered update is off by up
    to float32's eps times the weight (2 eps |weight|); and the gradients are sums whose order depends on the batch
    split and on the threads' shares, off by 1e-3 of the element's own update plus a few hundred eps of the model's
    largest update (1e-5 of it: a gradient whose terms cancel, like a key projection's bias under softmax, keeps only
    that noise)."""
    updates = {
        name: (after[name] - before[name], expected - before[name])
        for name, expected in expected_after.items()
        if expected.is_floating_point()
    }
    largest_update = max(expected_update.abs().max() for _, expected_update in updates.values())
    for name, (update, expected_update) in updates.items():
        eps = torch.finfo(expected_update.dtype).eps
        weight = torch.maximum(before[name].abs(), expected_after[name].abs())
        tolerance = 1e-3 * expected_update.abs() + 1e-5 * largest_update + 2 * eps * weight
        excess = (update - expected_update).abs() - tolerance
        assert excess.max() <= 0, (
            f"{name}: updates differ by {(update - expected_update).abs().max():.3g} at most, tolerance exceeded by "
            f"{excess.max():.3g} (its largest update {expected_update.abs().max():.3g}, the model's {largest_update:.3g})"
        )


def parameters_after_one_update(model, dataset, batch_size: int, accumulation_steps: int, output_dir) -> dict:
    """The trainable parameters of `model` after one optimizer step of a plain `transformers.Trainer` (SGD, constant
    learning rate) over `dataset` in batches of `batch_size` with `accumulation_steps` gradient-accumulation steps."""
    from transformers import Trainer, TrainingArguments

    arguments = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation_steps,
        max_steps=1,
        learning_rate=0.5,
        optim="sgd",
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,
        remove_unused_columns=False,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
    )
    Trainer(model=model, args=arguments, train_dataset=dataset).train()
    return {name: parameter.detach().clone() for name, parameter in model.named_parameters() if parameter.requires_grad}


def restore_default_sigint() -> None:
    """`preexec_fn` of a command that a test interrupts: a process started in the background by a non-interactive
    shell (`bash .ci/run &`) inherits SIGINT ignored, and so would the command, which then never sees the Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


CTRL_C_RETURN_CODES = (130, -signal.SIGINT)
"""How a command stopped by Ctrl-C ends, as `subprocess` reports it: `exit(130)`; or, when the command runs as
`python -m ...` and the KeyboardInterrupt surfaced through code a library evaluates with `PyRun_*`, CPython's flag of
an unhandled interrupt stays set although the command caught it, and the interpreter ends by re-raising SIGINT (-2).
A shell reports both as 130; console scripts (`hsvlt-eval`) always exit with 130."""
