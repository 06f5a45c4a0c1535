"""Command-line entry points (thin wrappers over package functions)."""
