"""Input and output: every file enters here once, is checked, and leaves as BDF columns."""

from .a123 import CellTest, read_tests
from .columns import ColumnMap
from .errors import DataError
from .readers import read_timeseries
from .writers import write_timeseries

__all__ = ["CellTest", "ColumnMap", "DataError", "read_tests", "read_timeseries", "write_timeseries"]
