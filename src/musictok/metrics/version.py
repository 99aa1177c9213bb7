"""Which definitions the metrics follow: the version written into every results JSON as ``metrics_version``.

A number can only be compared with numbers of the same version: the same audio scored under another
definition gives another number, with nothing in the number to tell you so. Raise the version whenever a
definition below changes (a window, a floor, a log base, an estimator, what is averaged over what), and add
a line here that says what changed.

v2 (2026-11-27): one definition changed, every other is v1's.
- The unigram entropy of a codebook's codes — codebook health's ``entropy_bits``, normalized entropy and
  perplexity, and the ``H_emp`` that enBPT divides by — is the NSB estimate (Nemenman, Shafee & Bialek
  2002; :mod:`musictok.metrics.entropy`) instead of the plug-in. The plug-in is biased low when the
  codebook is large next to the tokens it is read from: uniform codes of a 32768-entry codebook read
  13.45 bits from 15,000 tokens instead of 15 (NSB: 14.99), so v1's enBPT of DuoTok-sized codebooks was
  ≈ 11 % too high and its normalized entropy ≈ 10 % too low; for 1024 codes and 15,000 tokens the two
  differ by ≈ 0.5–1.5 %. Codebook health keeps the plug-in beside it as ``entropy_bits_raw`` /
  ``normalized_entropy_raw`` and adds ``uniform_utilization`` (``1 − (1 − 1/K)^N``, the utilization of
  uniformly used codes at the same N). The mutual informations keep the plug-in (shuffle-corrected).
- Reported Acc@k gained k = 5 (a new column, not a new definition).

v1 (2026-11-27):
- Mel distance: DAC's / PyramidCodec's. 7 resolutions, windows 32 … 2048 samples, hop = window / 4, 5 … 320
  Slaney Mel bands from 0 Hz to Nyquist on the STFT magnitude; per resolution the mean of
  ``|log10 max(mel_ref, 1e-5) - log10 max(mel_est, 1e-5)|``, **summed** over the 7 resolutions; computed in
  at least float32 whatever the autocast. The codec and vocoder Mel losses are the same function.
- STFT distance: the same log10 L1 on the linear STFT magnitude (Hann, hop = window / 4), windows 2048 and
  512, **averaged** over the windows. Waveform L1: mean absolute difference.
- SI-SDR (Le Roux et al. 2019, zero-mean signals, eps 1e-8) and plain SDR: undefined (NaN, null in JSON)
  where the reference is silent (mean square < 1e-12), and left out of means. BSS-eval SDR: projection
  through the best 512-tap causal filter. Separation: mixture consistency ``‖Σ est − mix‖ / ‖mix‖``,
  leakage as an interference-to-target ratio in dB, Student-t intervals over clips.
- BPT (mean cross-entropy in bits over time steps and codebooks), cnBPT = BPT / mean log2 K,
  enBPT = BPT / empirical unigram entropy, cnBPS = cnBPT × tokens/s, Acc@k (DuoTok, Appendices A, B.1.5).
- Codebook utilization (share of entries used at least once), normalized entropy H / log2 K, perplexity 2^H.
- Mutual information between codebooks and between neighbours: the plug-in estimate **minus** the same
  estimate on shuffled pairs at the same n, with a half-sampling interval (the raw plug-in value is kept
  beside it as ``*_raw``).
- MMD joint vs product: the codec loss's estimator (:mod:`musictok.quantize.mmd`: fixed Gaussian kernels on
  standardised features, joint and product samples from disjoint clips, same-clip pairs left out).
- Cross-track corruption ``ΔcnBPT = (cnBPT(corrupted) − cnBPT(clean)) / cnBPT(clean)`` and cnBPT against
  context length (DuoTok §6).

Before v1 no version was written. The results made before commit 1101af3 (2026-11-27; in ``docs/results``
the ``bandtok-small-*``, ``lm-small-*``, ``codecs`` and ``bench-2026-11-22`` JSON files) reported the MI
between codebooks, and the MI and NMI between neighbours, as the Miller-Madow plug-in alone (≈ 5.6 bits for
independent 1024-code streams over ≈ 5,600 frames: estimator bias, not dependence), and the MMD with kernel
widths from the median distance, every frame its own sample; a silent reference gave an SI-SDR set by eps.
Their other metrics follow the v1 definitions. ``real-music.json`` was made under v1 but before the version
was written.
"""

from __future__ import annotations

METRICS_VERSION = "2"
