"""Metrics of musictok: plain functions on tensors, shared by the benchmark, the trainers and the CLI.

- ``reconstruction``: Mel / STFT distances, waveform L1, SI-SDR, SDR.
- ``predictability``: BPT, cnBPT, enBPT, cnBPS and Acc@k from an LM's per-token losses.
- ``codebook``: utilization, normalized entropy and perplexity of codebooks.
- ``entropy``: the plug-in and the NSB (bias-corrected) entropy of counts, the package's one source of
  entropies.
- ``dependence``: mutual information between codebooks and neighbours (minus the same estimate on
  shuffled pairs, with an interval), MMD joint vs. product (the codec loss's statistic).
- ``version``: ``METRICS_VERSION``, the version of these definitions, written into every results JSON
  (its docstring is the changelog).
- ``diagnostics``: DuoTok's dual-track diagnostics — the relative cnBPT cost of shifting, masking or
  mismatching the conditioning track, and cnBPT against context length (import from the module).
"""

from musictok.metrics.codebook import (
    CodebookHealth,
    CodebookUsage,
    code_counts,
    codebook_health,
    codebook_usage,
)
from musictok.metrics.dependence import (
    DependenceEstimate,
    DependenceResult,
    InterCodebookMI,
    conditional_entropy_left,
    dependence_metrics,
    inter_codebook_mi,
    mmd_joint_vs_product,
    mutual_information,
    neighbour_mi,
    normalized_mutual_information,
    shuffle_corrected_mi,
)
from musictok.metrics.entropy import entropy_bits_from_counts, nsb_entropy_bits
from musictok.metrics.predictability import (
    PredictabilityResult,
    StreamPredictability,
    StreamPrediction,
    bits_per_token,
    cnbps,
    cnbpt,
    enbpt,
    mean_log2_codebook_size,
    nll_from_logits,
    predictability_metrics,
    stream_entropy_bits,
    topk_accuracy,
    unigram_entropy_bits,
)
from musictok.metrics.reconstruction import (
    ReconstructionResult,
    log_mel_magnitude,
    mel_distance,
    mel_filterbank,
    mel_l1,
    reconstruction_metrics,
    sdr,
    si_sdr,
    stft_distance,
    waveform_l1,
)
from musictok.metrics.version import METRICS_VERSION

__all__ = [
    "METRICS_VERSION",
    # reconstruction
    "mel_distance",
    "mel_l1",
    "stft_distance",
    "waveform_l1",
    "si_sdr",
    "sdr",
    "mel_filterbank",
    "log_mel_magnitude",
    "ReconstructionResult",
    "reconstruction_metrics",
    # predictability
    "nll_from_logits",
    "bits_per_token",
    "mean_log2_codebook_size",
    "cnbpt",
    "unigram_entropy_bits",
    "stream_entropy_bits",
    "enbpt",
    "cnbps",
    "topk_accuracy",
    "StreamPrediction",
    "StreamPredictability",
    "PredictabilityResult",
    "predictability_metrics",
    # codebook
    "code_counts",
    "entropy_bits_from_counts",
    "nsb_entropy_bits",
    "CodebookUsage",
    "CodebookHealth",
    "codebook_usage",
    "codebook_health",
    # dependence
    "mutual_information",
    "normalized_mutual_information",
    "InterCodebookMI",
    "inter_codebook_mi",
    "neighbour_mi",
    "conditional_entropy_left",
    "DependenceEstimate",
    "shuffle_corrected_mi",
    "mmd_joint_vs_product",
    "DependenceResult",
    "dependence_metrics",
]
