"""``python -m recsys.cli``: the ``recsys`` command (``serving.process`` starts the server this way)."""

from recsys.cli import main

main()
