"""Substitute-product recommendations: what to offer when the item a shopper wants is unavailable.

The public API is re-exported here. Importing the package loads none of it: each name is imported on first use
(PEP 562), so ``import recsys`` or the ``recsys`` command line does not load faiss or numba until an engine is
used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recsys.domain.config import AlsConfig, TrainConfig
    from recsys.domain.schema import Dataset, DataValidationError
    from recsys.domain.sizes import PackageSize, parse_package_size
    from recsys.domain.types import (
        AvailabilityPolicy,
        BrandShare,
        CategoryPreference,
        CustomerProfile,
        Intent,
        ItemInfo,
        ItemMatches,
        OrderSubstitutes,
        PriceBand,
        Substitute,
        SubstituteFilters,
        SubstituteList,
        UnknownAttributeError,
        UnknownCustomerError,
        UnknownIntentError,
        UnknownItemError,
        UnknownStoreError,
        Variant,
    )
    from recsys.model.artifact import ArtifactError
    from recsys.query.engine import SubstituteEngine
    from recsys.state.inventory import Inventory, StockUpdate

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["ArtifactError"], "recsys.model.artifact"),
    **dict.fromkeys(["AlsConfig", "TrainConfig"], "recsys.domain.config"),
    **dict.fromkeys(["SubstituteEngine"], "recsys.query.engine"),
    **dict.fromkeys(["Inventory", "StockUpdate"], "recsys.state.inventory"),
    **dict.fromkeys(["Dataset", "DataValidationError"], "recsys.domain.schema"),
    **dict.fromkeys(["PackageSize", "parse_package_size"], "recsys.domain.sizes"),
    **dict.fromkeys(["AvailabilityPolicy", "BrandShare", "CategoryPreference", "CustomerProfile", "Intent",
                     "ItemInfo", "ItemMatches", "OrderSubstitutes", "PriceBand", "Substitute", "SubstituteFilters",
                     "SubstituteList", "UnknownAttributeError", "UnknownCustomerError", "UnknownIntentError",
                     "UnknownItemError", "UnknownStoreError", "Variant"],
                    "recsys.domain.types"),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'recsys' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "BrandShare",
    "PriceBand",
    "CategoryPreference",
    "CustomerProfile",
    "AlsConfig",
    "ArtifactError",
    "AvailabilityPolicy",
    "DataValidationError",
    "Dataset",
    "Intent",
    "Inventory",
    "ItemInfo",
    "ItemMatches",
    "OrderSubstitutes",
    "PackageSize",
    "StockUpdate",
    "Substitute",
    "SubstituteEngine",
    "SubstituteFilters",
    "SubstituteList",
    "TrainConfig",
    "UnknownAttributeError",
    "UnknownCustomerError",
    "UnknownIntentError",
    "UnknownItemError",
    "UnknownStoreError",
    "Variant",
    "parse_package_size",
]
