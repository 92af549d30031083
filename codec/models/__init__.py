"""Network architectures of the codec."""

from codec.models.gained import DEFAULT_LAMBDAS, GainedMeanScaleHyperprior

__all__ = ["DEFAULT_LAMBDAS", "GainedMeanScaleHyperprior"]
