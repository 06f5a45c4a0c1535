"""The `evaluate` metric script shipped with the package (load it through `transformers_hsvlt.metrics`)."""
