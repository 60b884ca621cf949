"""edgekit: the compile side. Data, models, training and export of time-series models for small boards."""

__version__ = "0.1.0"
