"""The evaluation's outputs: the JSON file and the plot of every method's HR@k on both subsets."""

from __future__ import annotations

import json
from pathlib import Path

from recsys.model.registry import INTENT_METHODS
from training.evaluation.metrics import HIT_KS
from training.evaluation.protocol import SUBSETS, EvaluationResult


def plot(result: EvaluationResult, path: Path) -> None:
    """HR@k of every method on both subsets, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, subset in zip(axes, SUBSETS, strict=True):
        for name, values in result.metrics.items():
            hr = [values[subset][f"HR@{k}"] for k in HIT_KS]
            style = ({"linewidth": 3, "color": "black"} if name == "ours" else
                     {"linewidth": 2.5, "linestyle": "-."} if name in INTENT_METHODS.values() else {"linewidth": 1.5})
            ax.plot(HIT_KS, hr, marker="o", label=name, **style)
        for (name, values), line in zip(result.bounds.items(), (":", "--"), strict=False):
            ax.plot(HIT_KS, [values[subset][f"HR@{k}"] for k in HIT_KS], linestyle=line, color="grey",
                    linewidth=1.5, label=f"{name} (reads the test period)")
        ax.set_title(f"{subset.replace('_', ' ')} ({result.queries[subset]:,} queries)")
        ax.set_xlabel("k")
        ax.set_xticks(HIT_KS)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("hit rate @ k")
    axes[1].legend(loc="upper left", fontsize=8)
    fig.suptitle(f"switch hold-out, split {result.split[:10]}, model {result.model_version}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(result: EvaluationResult, path: Path) -> None:
    path.write_text(json.dumps(result.to_json(), indent=2))
