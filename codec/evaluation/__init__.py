"""Measuring the codec: Bjontegaard deltas and comparisons with other codecs."""
