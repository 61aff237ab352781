"""``python -m jaxnas.cli``: the console script."""

import sys

from jaxnas.cli import entry

sys.exit(entry())
