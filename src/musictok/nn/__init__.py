"""Neural-network blocks shared by musictok's models: ConvNeXt, discriminators, a Vocos-style vocoder."""

from musictok.nn.convnext import (
    ConvNeXtBackbone,
    ConvNeXtBlock1d,
    Downsample2d,
    ResBlock2d,
    Upsample2d,
)
from musictok.nn.discriminators import (
    DiscriminatorOutput,
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    MultiScalePatchGAN,
    PatchGAN2d,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from musictok.nn.vocoder import (
    ISTFTHead,
    MultiResolutionMelLoss,
    Vocoder,
    VocoderConfig,
    VocoderLossWeights,
    vocoder_discriminator_loss,
    vocoder_generator_losses,
)

__all__ = [
    "ConvNeXtBackbone",
    "ConvNeXtBlock1d",
    "DiscriminatorOutput",
    "Downsample2d",
    "ISTFTHead",
    "MultiPeriodDiscriminator",
    "MultiResolutionDiscriminator",
    "MultiResolutionMelLoss",
    "MultiScalePatchGAN",
    "PatchGAN2d",
    "ResBlock2d",
    "Upsample2d",
    "Vocoder",
    "VocoderConfig",
    "VocoderLossWeights",
    "discriminator_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
    "vocoder_discriminator_loss",
    "vocoder_generator_losses",
]
