import sys

from fbterm.cli import main

sys.exit(main())
