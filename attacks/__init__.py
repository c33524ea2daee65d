"""shiftbench attacks (installed as bench.attacks)."""
