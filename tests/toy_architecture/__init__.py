"""A test-only fifth architecture, in a folder of its own like `transformers_hsvlt/msrn/`: its config
(`configuration_toy`), its model (`modeling_toy`) and its registry entry (`architecture`). Registering it is one line,
`registry.register(TOY)`; every command then works with it, or refuses what its entry does not declare."""

from .architecture import TOY


__all__ = ["TOY"]
