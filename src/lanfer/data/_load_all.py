"""Imports every dataset module so that each registers its builder (see base.register_dataset)."""
from . import generic  # noqa: F401
