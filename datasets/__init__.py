"""shiftbench datasets (installed as bench.datasets)."""
