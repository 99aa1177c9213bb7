"""Token language models: sequence patterns (codes <-> LM steps), the TokenLM transformer, sampling.

``lm`` knows nothing of ``tokenizers``: both speak ``musictok.tokens`` (``TokenLayout``, ``Tokens``).
A typical round trip::

    pattern = make_pattern("delay", tokens.layout, [c.shape[1] for c in tokens.codes])
    inputs, targets, positions = pattern.build(tokens.codes)
    model = TokenLM.from_pattern(TokenLMConfig.preset("tiny"), pattern)
    out = model(inputs, positions, targets)          # out.loss, out.per_token_nll (B, steps, K)
    codes = pattern.revert(model.eval().generate(pattern, temperature=0.9, top_p=0.95))
"""

from musictok.lm.model import (
    TOKEN_LM_PRESETS,
    KVCache,
    LMOutput,
    TokenLM,
    TokenLMConfig,
)
from musictok.lm.patterns import (
    BOS_CELL,
    IGNORE_INDEX,
    PATTERNS,
    LMVocab,
    PatternBatch,
    PatternStep,
    SequencePattern,
    band_grid_pattern,
    coarse_to_fine_pattern,
    delay_pattern,
    flatten_pattern,
    make_pattern,
    parallel_pattern,
    stream_frames,
)
from musictok.lm.sampling import filter_logits, sample

__all__ = [
    "BOS_CELL",
    "IGNORE_INDEX",
    "PATTERNS",
    "TOKEN_LM_PRESETS",
    "KVCache",
    "LMOutput",
    "LMVocab",
    "PatternBatch",
    "PatternStep",
    "SequencePattern",
    "TokenLM",
    "TokenLMConfig",
    "band_grid_pattern",
    "coarse_to_fine_pattern",
    "delay_pattern",
    "filter_logits",
    "flatten_pattern",
    "make_pattern",
    "parallel_pattern",
    "sample",
    "stream_frames",
]
