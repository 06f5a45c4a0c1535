"""The conformance suite: one folder per architecture, each running the shared contract of `contract.py`."""
