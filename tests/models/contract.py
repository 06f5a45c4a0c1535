"""The contract every architecture of the family keeps, as transformers' common model tests check it: one set of
tests (`ModelContractTests`) that each `tests/models/<name>/test_modeling_<name>.py` runs with its `ModelTester` (a
tiny config, its inputs and what the architecture documents: initialisations, output shapes, attention
implementations, the modules its loss does not reach)."""

import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from transformers_hsvlt.export import export_onnx


# torch remembers its factory functions (`torch.empty`, `torch.linspace`, ...) the first time a device context is
# entered. transformers' `from_pretrained` (5.25) first enters one while it has replaced some of them, and from then on
# `with torch.device("meta")` leaves those on the CPU for the whole process: a meta-device test run after a
# `from_pretrained` would pass for a model that cannot be built on the meta device. Entering one here, at collection,
# makes torch remember the real functions.
with torch.device("meta"):
    torch.empty(0)


def fan_in(weight: torch.Tensor) -> int:
    """Inputs per output of a linear or convolution weight."""
    return weight[0].numel()


def fan_out(weight: torch.Tensor) -> int:
    """Outputs per input of a convolution weight `(out, in, k, k)`."""
    return weight.shape[0] * weight[0, 0].numel()


class Normal:
    """A documented normal initialisation: mean 0, standard deviation `std` (a number, or a function of the weight,
    e.g. of its fan-in)."""

    def __init__(self, std):
        self.std = std

    def check(self, name: str, tensor: torch.Tensor) -> None:
        std = self.std(tensor) if callable(self.std) else self.std
        values = tensor.detach().double().flatten()
        assert abs(values.mean().item()) < 5 * std / values.numel() ** 0.5, f"{name}: mean {values.mean()}"
        assert values.std().item() == pytest.approx(std, rel=0.25), f"{name}: std {values.std()}, documented {std}"


class Uniform:
    """A documented uniform initialisation in `[-bound, bound]` (`bound` a number or a function of the weight)."""

    def __init__(self, bound):
        self.bound = bound

    def check(self, name: str, tensor: torch.Tensor) -> None:
        bound = self.bound(tensor) if callable(self.bound) else self.bound
        values = tensor.detach().double().flatten()
        assert values.abs().max().item() <= bound, f"{name}: beyond +-{bound}"
        assert values.std().item() == pytest.approx(bound / 3**0.5, rel=0.25), f"{name}: std {values.std()}"


class ModelTester:
    """A tiny instance of one architecture and what its documentation promises. Subclasses set `model_class` and
    `image_size` and implement `get_config`; the other members have defaults."""

    model_class = None
    image_size = 32
    batch_size = 2
    attention_implementations: tuple[str, ...] = ()
    """The `attn_implementation` values the model takes (their logits must agree); empty: it refuses `sdpa`."""
    random_buffers: tuple[str, ...] = ()
    """Buffers whose documented initialisation is random (the others must equal a normal construction's)."""
    unreached_parameters: tuple[str, ...] = ()
    """Name patterns of parameters the loss does not reach, as the architecture documents."""

    def get_config(self):
        raise NotImplementedError

    def documented_inits(self, config) -> dict:
        """Parameter-name pattern -> `Normal`/`Uniform` of the documented initialisation."""
        return {}

    def prepare_model(self, model):
        """Give a new model its label side (e.g. class names); the model is returned."""
        return model

    def create_model(self):
        return self.prepare_model(self.model_class(self.get_config())).eval()

    def pixel_values(self, batch_size=None, seed=0):
        generator = torch.Generator().manual_seed(seed)
        shape = (batch_size or self.batch_size, 3, self.image_size, self.image_size)
        return torch.randn(shape, generator=generator)

    def labels(self, config, batch_size=None, seed=1):
        generator = torch.Generator().manual_seed(seed)
        labels = (torch.rand(batch_size or self.batch_size, config.num_labels, generator=generator) < 0.5).float()
        labels[:, 0] = 1.0
        return labels

    def hidden_state_shapes(self, config, batch_size) -> list[tuple[int, ...]]:
        raise NotImplementedError

    def attention_shapes(self, config, batch_size) -> list[tuple[int, ...]]:
        raise NotImplementedError


def logits_of(model, pixel_values, **kwargs):
    with torch.no_grad():
        return model(pixel_values, **kwargs).logits


def check_documented_inits(model, inits: dict, names=None) -> None:
    """Every parameter matching a pattern of `inits` (and in `names`, if given) has its documented statistics; each
    pattern matches at least one."""
    for pattern, documented in inits.items():
        matched = [
            (name, tensor)
            for name, tensor in model.state_dict().items()
            if re.search(pattern, name) and (names is None or name in names)
        ]
        assert matched, f"no weight matches {pattern}"
        for name, tensor in matched:
            documented.check(name, tensor)


class ModelContractTests:
    """The contract tests; a test module defines `class TestX(ModelContractTests): tester = XModelTester()`."""

    tester: ModelTester

    @pytest.fixture
    def model(self):
        torch.manual_seed(0)
        return self.tester.create_model()

    def test_construction_on_the_meta_device_then_initialisation(self):
        config = self.tester.get_config()
        with torch.device("meta"):
            model = self.tester.model_class(config)
        assert {tensor.device.type for tensor in (*model.parameters(), *model.buffers())} == {"meta"}
        model.to_empty(device="cpu")
        model.initialize_weights()
        reference = dict(self.tester.model_class(config).named_buffers())
        for name, buffer in model.named_buffers():
            if name.split(".")[-1] in self.tester.random_buffers:
                assert bool(torch.isfinite(buffer).all()), name
            else:
                assert torch.equal(buffer, reference[name]), f"buffer {name} differs from a normal construction"
        check_documented_inits(model, self.tester.documented_inits(config))
        assert all(bool(torch.isfinite(parameter).all()) for parameter in model.parameters())

    def test_weights_missing_from_a_checkpoint_get_the_documented_initialisation(self, model, tmp_path):
        inits = self.tester.documented_inits(model.config)
        model.save_pretrained(tmp_path)
        state = load_file(tmp_path / "model.safetensors")
        missing = {name for name in state if any(re.search(pattern, name) for pattern in inits)}
        save_file({name: value for name, value in state.items() if name not in missing},
                  tmp_path / "model.safetensors", metadata={"format": "pt"})  # fmt: skip
        loaded = self.tester.model_class.from_pretrained(tmp_path)
        check_documented_inits(loaded, inits, names=missing)
        for name, tensor in loaded.state_dict().items():
            if name not in missing:
                assert torch.equal(tensor, state[name]), f"{name} is not the checkpoint's"

    @pytest.mark.slow
    def test_every_parameter_receives_a_gradient(self, model):
        model.train()
        config = model.config
        loss = model(self.tester.pixel_values(), labels=self.tester.labels(config)).loss
        loss.backward()
        unreached = [
            name
            for name, parameter in model.named_parameters()
            if parameter.requires_grad
            and (parameter.grad is None or not bool(parameter.grad.any()))
            and not any(re.search(pattern, name) for pattern in self.tester.unreached_parameters)
        ]
        assert not unreached, f"no gradient reaches {unreached}"

    def test_save_and_load_give_the_same_weights_and_logits(self, model, tmp_path):
        pixel_values = self.tester.pixel_values()
        model.save_pretrained(tmp_path)
        loaded = self.tester.model_class.from_pretrained(tmp_path).eval()
        assert loaded.state_dict().keys() == model.state_dict().keys()
        for name, tensor in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], tensor), name
        torch.testing.assert_close(logits_of(loaded, pixel_values), logits_of(model, pixel_values), rtol=0, atol=0)

    def test_return_dict_and_tuple_agree(self, model):
        pixel_values, labels = self.tester.pixel_values(), self.tester.labels(model.config)
        with torch.no_grad():
            as_dict = model(pixel_values, labels=labels, output_hidden_states=True)
            as_tuple = model(pixel_values, labels=labels, output_hidden_states=True, return_dict=False)
        assert isinstance(as_tuple, tuple) and len(as_tuple) == len(as_dict.to_tuple())
        for from_dict, from_tuple in zip(as_dict.to_tuple(), as_tuple):
            torch.testing.assert_close(from_tuple, from_dict, rtol=0, atol=0)

    def test_hidden_states_and_attentions_have_the_documented_shapes(self, model):
        batch_size = 3
        outputs = model(self.tester.pixel_values(batch_size), output_hidden_states=True, output_attentions=True)
        shapes = [tuple(state.shape) for state in outputs.hidden_states]
        assert shapes == self.tester.hidden_state_shapes(model.config, batch_size)
        shapes = [tuple(attention.shape) for attention in outputs.attentions]
        assert shapes == self.tester.attention_shapes(model.config, batch_size)
        plain = model(self.tester.pixel_values(batch_size))
        assert plain.hidden_states is None and plain.attentions is None

    @pytest.mark.slow
    def test_gradient_checkpointing_gives_the_same_loss_and_gradients(self, model):
        if not model.supports_gradient_checkpointing:
            with pytest.raises(ValueError, match="does not support activation checkpointing"):
                model.activation_checkpointing_enable()
            return
        pixel_values, labels = self.tester.pixel_values(), self.tester.labels(model.config)

        def loss_and_gradients():
            model.zero_grad()
            loss = model(pixel_values, labels=labels).loss
            loss.backward()
            return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

        model.train()
        expected_loss, expected_gradients = loss_and_gradients()
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        assert model.is_activation_checkpointing
        loss, gradients = loss_and_gradients()
        torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=1e-6)
        assert gradients.keys() == expected_gradients.keys()
        for name, gradient in gradients.items():
            torch.testing.assert_close(gradient, expected_gradients[name], rtol=1e-4, atol=1e-6, msg=name)

    def test_attention_implementations_give_the_same_logits(self, model, tmp_path):
        model.save_pretrained(tmp_path)
        if not self.tester.attention_implementations:
            with pytest.raises(ValueError, match="scaled_dot_product_attention"):
                self.tester.model_class.from_pretrained(tmp_path, attn_implementation="sdpa")
            return
        pixel_values = self.tester.pixel_values()
        logits = {
            implementation: logits_of(
                self.tester.model_class.from_pretrained(tmp_path, attn_implementation=implementation).eval(),
                pixel_values,
            )
            for implementation in self.tester.attention_implementations
        }
        for implementation, value in logits.items():
            torch.testing.assert_close(value, logits_of(model, pixel_values), rtol=1e-4, atol=1e-5, msg=implementation)

    @pytest.mark.slow
    def test_a_batch_gives_the_logits_of_its_images_one_by_one(self, model):
        pixel_values = self.tester.pixel_values(3)
        batched = logits_of(model, pixel_values)
        one_by_one = torch.cat([logits_of(model, image[None]) for image in pixel_values])
        torch.testing.assert_close(batched, one_by_one, rtol=1e-4, atol=1e-5)

    @pytest.mark.slow
    def test_inference_is_deterministic(self, model):
        pixel_values = self.tester.pixel_values()
        torch.testing.assert_close(logits_of(model, pixel_values), logits_of(model, pixel_values), rtol=0, atol=0)

    @pytest.mark.parametrize(
        "dynamic_batch", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["static", "dynamic"]
    )
    @pytest.mark.slow
    def test_torch_export_matches_eager(self, model, dynamic_batch):
        from transformers_hsvlt.export import ClassifierLogits

        dynamic_shapes = {"pixel_values": {0: torch.export.Dim("batch_size")}} if dynamic_batch else None
        with torch.no_grad():
            program = torch.export.export(
                ClassifierLogits(model), (self.tester.pixel_values(2),), dynamic_shapes=dynamic_shapes
            )
        for batch_size in (3, 1) if dynamic_batch else (2,):
            pixel_values = self.tester.pixel_values(batch_size, seed=5)
            with torch.no_grad():
                exported = program.module()(pixel_values)
            torch.testing.assert_close(exported, logits_of(model, pixel_values), rtol=1e-4, atol=1e-5)

    @pytest.mark.slow
    @pytest.mark.parametrize("dynamic_batch", [False, True], ids=["static", "dynamic"])
    def test_onnx_export_matches_eager(self, model, dynamic_batch, tmp_path):
        onnxruntime = pytest.importorskip("onnxruntime", reason="ONNX export parity needs onnxruntime")
        pytest.importorskip("onnxscript", reason="torch.onnx.export(dynamo=True) needs onnxscript")
        path = export_onnx(model, tmp_path / "model.onnx", batch_size=2, dynamic_batch=dynamic_batch)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for batch_size in (3, 1) if dynamic_batch else (2,):
            pixel_values = self.tester.pixel_values(batch_size, seed=5)
            (logits,) = session.run(["logits"], {"pixel_values": pixel_values.numpy()})
            np.testing.assert_allclose(logits, logits_of(model, pixel_values).numpy(), rtol=1e-4, atol=1e-4)
