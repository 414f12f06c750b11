"""Architecture records, one module per family, registered by Hugging Face ``model_type`` (see :mod:`.base`)."""

from . import gpt2, llama  # noqa: F401  (registration)
from .base import Arch, Sizes, for_model, for_model_type, supported

__all__ = ["Arch", "Sizes", "for_model", "for_model_type", "supported"]
