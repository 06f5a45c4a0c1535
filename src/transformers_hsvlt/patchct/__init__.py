"""PatchCT's toolkit code (ICCV 2023; a reconstruction from the abstract and figure, not checked against the paper):
its registry entry (`architecture`). Its remote code (`configuration_patchct`, `modeling_patchct`, with the shared
`clip_towers`) sits with the family's at the top of the package. See `docs/patchct-pvlr.md`."""
