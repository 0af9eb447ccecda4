"""The state every serving process shares: live stock (``inventory``), substitution feedback, the model pointer, behind
one ``StateStore`` chosen by a URL (``store``: SQLite in ``storage``, PostgreSQL in ``postgres``)."""
