"""What each store carries, as far as a model knows it: the retailer's assortment file, and what the trainer
inferred from sales where it measured the inference trustworthy (``training.assortment``).

An item that nobody reported on at a store is offered there only with this evidence (see
:mod:`recsys.query.availability`): listed by the file for that store (``carried``), or likely carried by the
inference (``likely``): sold at that store in the window, where store-level inference was trusted, else sold
anywhere in the chain in the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import scipy.sparse as sp

ASSORTMENT_FILE = "assortment.npz"


def _rows(n_rows: int, n_items: int) -> sp.csr_matrix:
    return sp.csr_matrix(cast(Any, (n_rows, n_items)), dtype=np.int8)  # empty (the stubs know no shape form)


@dataclass
class Assortment:
    """Per store, the items a model knows it carries; rows follow item indices (group order)."""

    chain: np.ndarray  # bool per item: sold anywhere in the chain within the window (likely carried)
    inferred_stores: np.ndarray  # store ids (str) where store-level inference was measured trustworthy
    inferred: sp.csr_matrix  # inferred_stores x items: sold at that store within the window
    listed_stores: np.ndarray  # store ids (str) the retailer's assortment file covers
    listed: sp.csr_matrix  # listed_stores x items: the file lists the item for the store

    @classmethod
    def everything(cls, n_items: int) -> Assortment:
        """No evidence either way (a model trained before assortments were part of it): every item counts as
        likely carried, which is how such a model always answered."""
        return cls(np.ones(n_items, dtype=bool), np.empty(0, dtype=str), _rows(0, n_items),
                   np.empty(0, dtype=str), _rows(0, n_items))

    @property
    def n_items(self) -> int:
        return len(self.chain)

    def stores(self) -> set[str]:
        """Every store this evidence names."""
        return {str(s) for s in self.inferred_stores} | {str(s) for s in self.listed_stores}

    def moved(self, new_position: np.ndarray, n_items: int) -> Assortment:
        """The same evidence in a catalog of ``n_items`` where item ``i`` is now at ``new_position[i]`` (items
        added to the catalog since training): nothing is known of the new ones."""
        chain = np.zeros(n_items, dtype=bool)
        chain[new_position] = self.chain

        def move(matrix: sp.csr_matrix) -> sp.csr_matrix:
            coo = matrix.tocoo()
            moved = sp.csr_matrix((coo.data, (coo.row, new_position[coo.col])), shape=(matrix.shape[0], n_items))
            moved.sort_indices()
            return moved

        return Assortment(chain, self.inferred_stores, move(self.inferred), self.listed_stores, move(self.listed))

    def save(self, directory: Path) -> None:
        arrays: dict[str, np.ndarray] = {"chain": self.chain.astype(bool),
                                         "inferred_stores": self.inferred_stores.astype(str),
                                         "listed_stores": self.listed_stores.astype(str)}
        for name in ("inferred", "listed"):
            matrix: sp.csr_matrix = getattr(self, name)
            arrays[f"{name}_indptr"] = matrix.indptr.astype(np.int64)
            arrays[f"{name}_indices"] = matrix.indices.astype(np.int32)
            arrays[f"{name}_shape"] = np.asarray(matrix.shape, dtype=np.int64)
        np.savez(directory / ASSORTMENT_FILE, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, directory: Path, n_items: int) -> Assortment:
        path = directory / ASSORTMENT_FILE
        if not path.is_file():
            return cls.everything(n_items)
        with np.load(path, allow_pickle=False) as arrays:
            matrices = {}
            for name in ("inferred", "listed"):
                indices = arrays[f"{name}_indices"]
                matrices[name] = sp.csr_matrix((np.ones(len(indices), dtype=np.int8), indices,
                                                arrays[f"{name}_indptr"]),
                                               shape=(int(arrays[f"{name}_shape"][0]), int(arrays[f"{name}_shape"][1])))
            assortment = cls(arrays["chain"].astype(bool), arrays["inferred_stores"].astype(str),
                             matrices["inferred"], arrays["listed_stores"].astype(str), matrices["listed"])
        if assortment.n_items != n_items:
            raise ValueError(f"{ASSORTMENT_FILE} covers {assortment.n_items} items, the model {n_items}")
        return assortment
