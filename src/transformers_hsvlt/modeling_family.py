"""What every model of the family shares when it is loaded (remote code: imports only torch and transformers).

`FamilyPreTrainedModel.from_pretrained` reads weights from safetensors unless `use_safetensors=False` is asked for
explicitly: a checkpoint holding only `pytorch_model.bin` (a pickle, which can run code when read) is refused, also
through `AutoModel...from_pretrained(..., trust_remote_code=True)` and `pipeline`. Loaded weights holding NaN or
infinite values are refused with an error naming them, instead of giving NaN scores.

Every module's `_init_weights` runs (`initialize_weights`), also for modules owning no parameter directly (a projection
pair, a tower wrapper, CLIP's attention): transformers skips those in custom code, which left documented
initialisations unapplied.
"""

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init


class FamilyPreTrainedModel(PreTrainedModel):
    """`PreTrainedModel` that loads safetensors only by default, refuses non-finite weights and saves self-contained
    remote-code checkpoints."""

    remote_code_auto_map: dict[str, str] = {}
    """The `auto_map` of saved checkpoints: Auto class -> `module.Class` of the architecture's remote code (its config,
    base model and classifier), whichever of the two models is saved."""

    supports_class_names: bool = False
    """Whether the model scores any class names through its own text tower (open vocabulary: PatchCT, PVLR): it then
    has `class_name_inputs(names, tokenizer)` (forward keyword arguments scoring `names`) and
    `set_class_names(names, tokenizer)` (`names` as its labels from now on). The pipeline's `candidate_labels` read
    it; the toolkit reads the same capability from its architecture registry (`relabelling="class_names"`)."""

    class_name_tokenizer = None
    """The tokenizer of the class names of a `supports_class_names` model (saved beside its checkpoint), attached by
    whoever builds or loads the model (the toolkit's `load_model`, the CLIP builder); `None` otherwise."""

    @torch.no_grad()
    @init.guard_torch_init_functions()
    def initialize_weights(self):
        """`PreTrainedModel.initialize_weights` as for transformers' own models: each sub-model (e.g. a CLIP tower)
        with its own `_init_weights`, children before parents, every module not yet initialised. Transformers treats
        custom code as code that may write weights in place and skips there every module whose own parameters are all
        loaded, which includes modules owning none; the family's `_init_weights` only uses
        `transformers.initialization`, which leaves loaded weights alone."""
        initialize_modules(self, self._initialize_weights)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save as a self-contained remote-code checkpoint: the config's `auto_map` gets `remote_code_auto_map`."""
        self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **self.remote_code_auto_map}
        super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        if kwargs.get("use_safetensors") is None:
            kwargs["use_safetensors"] = True
        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        non_finite = [
            name
            for name, tensor in (*model.named_parameters(), *model.named_buffers())
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
        ]
        if non_finite:
            raise ValueError(
                f"{pretrained_model_name_or_path}: the weights hold NaN or infinite values in {sorted(non_finite)[:8]}."
            )
        return loaded


def initialize_modules(module: nn.Module, initialize) -> None:
    """Apply `initialize(module)` after its children, switching to a sub-model's own `_initialize_weights` below
    it."""
    for child in module.children():
        initialize_modules(child, child._initialize_weights if isinstance(child, PreTrainedModel) else initialize)
    initialize(module)


def check_finite_pixels(pixel_values: torch.Tensor) -> None:
    """Raise a `ValueError` when `pixel_values` holds NaN or infinite values (they would give NaN logits)."""
    if not torch.compiler.is_compiling() and not bool(torch.isfinite(pixel_values).all()):
        raise ValueError("`pixel_values` holds NaN or infinite values.")
