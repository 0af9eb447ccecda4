"""LightGBM's text model scored by QuickScorer, in a small numba kernel (:func:`recsys.query.kernels.score_columns`).

The re-ranker scores a shortlist of about 40 rows per query. ``lightgbm.Booster.predict`` spends most of its
time on per-call overhead there, and walking the trees node by node stalls on each step's dependent loads
and mispredicted branches. QuickScorer (Lucchese et al., SIGIR 2015) needs neither: a tree's leaves are
numbered left to right and each split node keeps the bit mask of the leaves that survive when the row goes
right of it. A row clears the masks' bits of every node whose threshold its value exceeds; in each tree the
exit leaf is then the lowest bit still set. Each node is applied to all rows at once, which the compiler
vectorises (V-QuickScorer, Lucchese et al., SIGIR 2016): 40 rows of 50 trees in about 10 µs. The scores are
LightGBM's raw scores: the same comparisons (``value <= threshold`` goes left, NaN as 0 under LightGBM's
default missing-value handling) and the trees summed in LightGBM's order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.query.kernels import Trees, plain, score_columns

#: the most leaves a tree may have: one bit per leaf in a 64-bit mask
MAX_LEAVES = 64
#: LightGBM's ``decision_type`` bits other than the default direction: categorical split, missing-value type
_CATEGORICAL, _MISSING_TYPE = 1, 12


@dataclass(frozen=True, slots=True)
class Forest:
    """The trees of a LightGBM model, arranged for QuickScorer: split nodes grouped by feature, ascending threshold
    within a feature (the arrays are :class:`recsys.query.kernels.Trees`, what the scoring kernel reads)."""

    num_features: int
    arrays: Trees

    @classmethod
    def from_lightgbm(cls, model_text: str) -> Forest:
        """Parse LightGBM's text model: one output per iteration, numerical splits with LightGBM's default
        missing-value handling (what training on NaN-free features gives), at most 64 leaves a tree."""
        header, *blocks = model_text.split("\nTree=")
        meta = _fields(header)
        if int(meta.get("num_tree_per_iteration", "1")) != 1 or "average_output" in header.split("\n"):
            raise ValueError("only single-output, boosted LightGBM models are supported")
        nodes: list[tuple[int, float, int, int]] = []  # (feature, threshold, tree, mask)
        leaf_values: list[float] = []
        leaf_offset = []
        for t, block in enumerate(blocks):
            tree = _fields(block.split("\nend of trees")[0])
            values = [float(v) for v in tree["leaf_value"].split()]
            if len(values) > MAX_LEAVES:
                raise ValueError(f"a tree has {len(values)} leaves; at most {MAX_LEAVES} are supported")
            if int(tree.get("is_linear", "0")):
                raise ValueError("linear trees are not supported")
            leaf_offset.append(len(leaf_values))
            if len(values) == 1:
                leaf_values += values
                continue
            kinds = [int(v) for v in tree["decision_type"].split()]
            if any(kind & (_CATEGORICAL | _MISSING_TYPE) for kind in kinds):
                raise ValueError("categorical splits and missing-value split types are not supported")
            features = [int(v) for v in tree["split_feature"].split()]
            thresholds = [float(v) for v in tree["threshold"].split()]
            children = [[int(v) for v in tree[side].split()] for side in ("left_child", "right_child")]
            order: list[int] = []  # LightGBM leaf ids, left to right
            left_leaves: dict[int, list[int]] = {}  # node -> the positions of its left subtree's leaves

            def visit(child: int) -> list[int]:
                if child < 0:
                    order.append(~child)
                    return [len(order) - 1]
                left_leaves[child] = visit(children[0][child])
                return left_leaves[child] + visit(children[1][child])

            visit(0)
            leaf_values += [values[leaf] for leaf in order]
            for node, lost in left_leaves.items():
                mask = (1 << MAX_LEAVES) - 1 - sum(1 << p for p in lost)
                nodes.append((features[node], thresholds[node], t, mask))
        n_features = int(meta["max_feature_idx"]) + 1
        nodes.sort(key=lambda node: (node[0], node[1]))
        feature_of = np.array([node[0] for node in nodes], dtype=np.int64)
        return cls(n_features, Trees(
            feature_ptr=np.searchsorted(feature_of, np.arange(n_features + 1)).astype(np.int64),
            threshold=np.array([node[1] for node in nodes], dtype=np.float64),
            tree=np.array([node[2] for node in nodes], dtype=np.int64),
            mask=np.array([node[3] for node in nodes], dtype=np.uint64),
            leaf_offset=np.array(leaf_offset, dtype=np.int64), leaf_value=np.array(leaf_values, dtype=np.float64),
        ))

    @classmethod
    def empty(cls, num_features: int) -> Forest:
        """No trees: every row scores 0 (what a kernel that takes a forest gets when there is none)."""
        nothing = np.empty(0, dtype=np.int64)
        return cls(num_features, Trees(np.zeros(num_features + 1, dtype=np.int64), np.empty(0), nothing,
                                       np.empty(0, dtype=np.uint64), nothing, np.empty(0)))

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Raw scores (the sum of the trees' leaves) of feature rows, shape (n, num_features)."""
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] != self.num_features:
            raise ValueError(f"expected rows of {self.num_features} features, got shape {rows.shape}")
        return score_columns(np.nan_to_num(rows.T.astype(np.float64), nan=0.0), plain(self.arrays))


def _fields(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
