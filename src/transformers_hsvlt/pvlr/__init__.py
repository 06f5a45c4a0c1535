"""PVLR's toolkit code (arXiv 2401.17881; a reconstruction from the abstract and figure, not checked against the
paper): its registry entry (`architecture`). Its remote code (`configuration_pvlr`, `modeling_pvlr`, with the shared
`clip_towers`) sits with the family's at the top of the package. See `docs/patchct-pvlr.md`."""
