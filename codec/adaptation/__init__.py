"""Content-adaptive encoding: per-image latent refinement and decoder adapters (seeds 001-003)."""
