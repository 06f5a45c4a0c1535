"""MSRN's toolkit code (Multi-layered Semantic Representation Network, Qu et al., arXiv 2106.11596): its registry
entry (`architecture`), label statistics and the authors' `.pkl` files (`label_graph`), ResNet weights and the
authors' checkpoints (`conversion`), its training augmentation (`augmentation`). Its remote code
(`configuration_msrn`, `modeling_msrn`, `modeling_msrn_graph`) sits with the family's at the top of the package.
See `docs/msrn.md`."""
