"""Substitute-product recommendations: what to offer when the item a shopper wants is unavailable."""

from recsys import _kernel_cache  # noqa: F401  (first: numba's cache directory, before any kernel is defined)
from recsys.artifact import ArtifactError
from recsys.config import AlsConfig, TrainConfig
from recsys.engine import (
    CategoryPreference,
    CustomerProfile,
    ItemInfo,
    OrderSubstitutes,
    Substitute,
    SubstituteEngine,
    SubstituteFilters,
    SubstituteList,
    UnknownCustomerError,
    UnknownItemError,
    Variant,
)
from recsys.inventory import Inventory, StockUpdate
from recsys.schema import Dataset, DataValidationError
from recsys.sizes import PackageSize, parse_package_size

__all__ = [
    "CategoryPreference",
    "CustomerProfile",
    "AlsConfig",
    "ArtifactError",
    "DataValidationError",
    "Dataset",
    "Inventory",
    "ItemInfo",
    "OrderSubstitutes",
    "PackageSize",
    "StockUpdate",
    "Substitute",
    "SubstituteEngine",
    "SubstituteFilters",
    "SubstituteList",
    "TrainConfig",
    "UnknownCustomerError",
    "UnknownItemError",
    "Variant",
    "parse_package_size",
]
