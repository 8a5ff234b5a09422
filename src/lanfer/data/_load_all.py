"""Imports every dataset module so that each registers its builder (see base.register_dataset)."""
from . import generic  # noqa: F401
from . import affectnet, fer2013, ferplus, kdef, prepare, rafdb  # noqa: F401,E401  (official layouts, cache)
from .synth import dataset as _synth_dataset  # noqa: F401  (the synthetic renderer's sets)
