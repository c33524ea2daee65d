"""shiftbench leaderboard (installed as bench.leaderboard)."""
