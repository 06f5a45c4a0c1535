"""HSVLT's toolkit code: its registry entry (`architecture`), ConvNeXt backbone weights (`backbone`) and the
conversion of the authors' checkpoints (`conversion`). Its remote code (`configuration_hsvlt`, `modeling_hsvlt`,
`modeling_hsvlt_encoder`, `modeling_hsvlt_attention`, `modeling_hsvlt_backward`) sits with the family's at the top of
the package."""
