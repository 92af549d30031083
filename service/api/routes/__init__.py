"""Route modules: jobs, bitstreams, decode, models, health, metrics."""
