"""``python -m fbterm.cli``: the same as the ``fbterm`` command."""

import sys

from fbterm.cli import main

sys.exit(main())
