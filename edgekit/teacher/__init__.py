"""The teacher: an Astromer-2-style masked time-series encoder with long-window attention backends."""
