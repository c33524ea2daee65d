"""Example shiftbench plugin: ``jpeg`` (a corruption) and ``knn`` (a detector).

Both classes are found through the entry points in ``pyproject.toml``; nothing here registers
itself, so importing this package has no side effects.
"""

from shiftbench_plugin_example.jpeg import JPEGCompression
from shiftbench_plugin_example.knn import KNN

__all__ = ["JPEGCompression", "KNN"]
__version__ = "0.1.0"
