"""Few-shot domain adapters (seed 004): adapt the base model to a whole domain from 5-25 images."""
