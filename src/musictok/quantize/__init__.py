"""Quantizers: all take channels-last ``(..., D)`` vectors and return a :class:`QuantizedResult`."""

from musictok.quantize.base import QuantizedResult, Quantizer, code_stats, nearest_code
from musictok.quantize.rvq import ResidualVQ, RVQConfig
from musictok.quantize.simvq import SimVQ, SimVQConfig
from musictok.quantize.vq import VectorQuantizer, VQConfig

__all__ = [
    "QuantizedResult",
    "Quantizer",
    "RVQConfig",
    "ResidualVQ",
    "SimVQ",
    "SimVQConfig",
    "VQConfig",
    "VectorQuantizer",
    "code_stats",
    "nearest_code",
]
