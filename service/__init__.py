"""The HTTP service: FastAPI app, Redis-backed job records, storage, decode cache."""
