"""``python -m modeldiff`` runs the command line."""

import sys

from modeldiff.cli import main

sys.exit(main())
