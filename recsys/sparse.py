"""Several sparse matrices read together: the engine's per-query lookups of item-pair, customer and store rows."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from recsys import kernels


class SparseRows(NamedTuple):
    """Several sparse matrices of one shape on one sorted CSR structure (the union of theirs), so that one
    search over a row's indices serves them all: ``values[:, j]`` holds matrix ``j`` (0 where it has none).
    A named tuple; the compiled kernels (:mod:`recsys.kernels`) take it as a plain tuple and unpack it."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray  # (nnz, number of matrices), float32

    @classmethod
    def of(cls, *matrices: sp.csr_matrix) -> SparseRows:
        n_rows, n_cols = matrices[0].shape
        keys = [np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(m.indptr)) * n_cols + m.indices
                for m in matrices]
        union = np.unique(np.concatenate(keys))
        values = np.zeros((len(union), len(matrices)), dtype=np.float32)
        for j, (matrix, key) in enumerate(zip(matrices, keys, strict=True)):
            values[np.searchsorted(union, key), j] = matrix.data
        indptr = np.searchsorted(union // n_cols, np.arange(n_rows + 1))
        return cls(indptr, union % n_cols, values)  # int64, as candidate ids: searchsorted then copies nothing

    def row(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """The row's column indices (sorted) and their values."""
        start, end = self.indptr[row], self.indptr[row + 1]
        return self.indices[start:end], self.values[start:end]

    def lookup(self, row: int, columns: np.ndarray) -> np.ndarray:
        """Values at (``row``, ``columns``): shape (len(columns), number of matrices), 0 where absent."""
        return kernels.lookup(kernels.plain(self), row, columns)
