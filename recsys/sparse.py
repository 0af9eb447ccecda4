"""Several sparse matrices read together: the engine's per-query lookups of item-pair, customer and store rows."""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True, slots=True)
class SparseRows:
    """Several sparse matrices of one shape on one sorted CSR structure (the union of theirs), so that one
    search over a row's indices serves them all: ``values[:, j]`` holds matrix ``j`` (0 where it has none)."""

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
        return _lookup(self.indptr, self.indices, self.values, row, columns)


@numba.njit(cache=True, nogil=True)
def _lookup(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, row: int, columns: np.ndarray
            ) -> np.ndarray:
    pos = positions(indptr, indices, row, columns, False)
    out = np.zeros((len(columns), values.shape[1]), dtype=values.dtype)
    for i in range(len(columns)):
        if pos[i] >= 0:
            out[i] = values[pos[i]]
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def positions(indptr: np.ndarray, indices: np.ndarray, row: int, columns: np.ndarray, ascending: bool
              ) -> np.ndarray:
    """Where each (row, column) is stored in a CSR structure, -1 if absent. Ascending ``columns`` (a group's
    candidates usually are) are merged with the row in one pass; others take a binary search each."""
    out = np.full(len(columns), -1, dtype=np.int64)
    start, end = indptr[row], indptr[row + 1]
    if start == end or len(columns) == 0:
        return out
    if ascending:
        pos = start + np.searchsorted(indices[start:end], columns[0])
        for i in range(len(columns)):
            while pos < end and indices[pos] < columns[i]:
                pos += 1
            if pos < end and indices[pos] == columns[i]:
                out[i] = pos
        return out
    row_indices = indices[start:end]
    for i in range(len(columns)):
        pos = np.searchsorted(row_indices, columns[i])
        if pos < len(row_indices) and row_indices[pos] == columns[i]:
            out[i] = start + pos
    return out
