"""``python -m lastactive``: the ``lastactive`` command."""

import sys

from lastactive.cli import main

sys.exit(main())
