"""Source separation: one :class:`Separator` contract, an LM separator and a discriminative baseline.

- ``base``: the contract (``separate(mix (B, T)) -> (B, n_stems, T)``), chunked windows for long inputs,
  persistence and the registry by kind;
- ``lm``: :class:`LMSeparator` — a Conformer over the mixture as the prefix of a TokenLM that writes the
  stems' tokens one stem after another, decoded by a frozen tokenizer (Liu et al., 2026);
- ``mask``: :class:`MaskSeparator` — our own softmax-mask U-Net on the STFT, the baseline trained on the
  same data;
- ``files``: separating audio files into one WAV per stem, a window at a time.

Like ``train/``, this package stands above ``tokenizers/`` and ``lm/`` and may use both.
"""

from .base import SEPARATORS, Separator, SeparatorError, iter_windows, register_separator, stem_group
from .lm import LMSeparator, LMSeparatorConfig
from .mask import MaskSeparator, MaskSeparatorConfig

__all__ = ["SEPARATORS", "LMSeparator", "LMSeparatorConfig", "MaskSeparator", "MaskSeparatorConfig", "Separator",
           "SeparatorError", "iter_windows", "register_separator", "stem_group"]
