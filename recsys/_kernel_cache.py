"""Where numba caches the compiled query kernels: one directory per version of the code that compiles them.

numba recompiles a cached kernel when the kernel's own file changes, but not when a kernel it calls from
another file does: after a change to ``recsys/ranking.py`` alone, ``engine._select`` would keep running the
old ranking code from its cache. So the cache directory is named after a hash of every ``recsys`` module
that uses numba, and a new version of any of them compiles everything afresh (once: about 20 s).

Imported by ``recsys/__init__.py`` before any kernel module, because numba picks a kernel's cache directory
when the kernel is defined. ``NUMBA_CACHE_DIR``, when set, is where the versioned directory goes; by default
it is ``recsys/__pycache__``, where older versions are removed. Where that is not writable, numba falls back
to its own choice of directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Final

import numba

_PACKAGE: Final[Path] = Path(__file__).resolve().parent
_PREFIX: Final[str] = "numba-"


def kernel_code_digest() -> str:
    """A short hash of the package's modules that use numba (their bytes, in name order)."""
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE.glob("*.py")):
        source = path.read_bytes()
        if b"numba" in source:
            digest.update(path.name.encode() + b"\0" + source)
    return digest.hexdigest()[:16]


def configure() -> Path:
    """Point numba's cache at this code version's directory and return it."""
    user_dir = os.environ.get("NUMBA_CACHE_DIR")
    base = Path(user_dir) if user_dir else _PACKAGE / "__pycache__"
    directory = base / f"{_PREFIX}{kernel_code_digest()}"
    if not user_dir:  # ours alone: older versions' kernels are dead weight
        for old in base.glob(f"{_PREFIX}*"):
            if old != directory:
                shutil.rmtree(old, ignore_errors=True)
    numba.config.CACHE_DIR = str(directory)
    return directory


configure()
