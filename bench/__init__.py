"""shiftbench: how well do detectors catch inputs a classifier should not trust."""

__version__ = "0.1.0"
