"""``python -m inrecon.cli`` (and ``torchrun -m inrecon.cli``) runs the command line."""

import sys

from inrecon.cli import main

sys.exit(main())
