"""Substitute-product recommendations: what to offer when the item a shopper wants is unavailable."""

from recsys.artifact import ArtifactError
from recsys.config import AlsConfig, TrainConfig
from recsys.engine import SubstituteEngine
from recsys.inventory import Inventory, StockUpdate
from recsys.schema import Dataset, DataValidationError
from recsys.sizes import PackageSize, parse_package_size
from recsys.types import (
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
    UnknownCustomerError,
    UnknownIntentError,
    UnknownItemError,
    Variant,
)

__all__ = [
    "BrandShare",
    "PriceBand",
    "CategoryPreference",
    "CustomerProfile",
    "AlsConfig",
    "ArtifactError",
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
    "UnknownCustomerError",
    "UnknownIntentError",
    "UnknownItemError",
    "Variant",
    "parse_package_size",
]
