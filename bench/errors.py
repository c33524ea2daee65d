"""The one exception for user mistakes: the CLI prints its message and exits 2."""


class BenchError(Exception):
    """A user mistake (unknown name, bad spec, missing files, ...). One line, says what to do."""
