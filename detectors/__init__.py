"""shiftbench detectors (installed as bench.detectors)."""
