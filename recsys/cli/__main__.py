"""``python -m recsys.cli``: the ``recsys`` command (``serving.process`` starts the server this way)."""

import sys

from recsys.cli import main

sys.exit(main())
