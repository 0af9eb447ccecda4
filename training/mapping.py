"""Where each canonical field lives in a retailer's export: the ``--mapping FILE.toml`` of train, retrain,
evaluate and add-items, or the same as Python objects.

```toml
[events]                 # ColumnMapping: the event log
customer_id = "visitorid"
item_id = "itemid"
timestamp = "ts"
timestamp_unit = "ms"    # "iso" (default), "s" or "ms"
[events.types]           # source name -> canonical type; unlisted names are counted and skipped
transaction = "purchase"
[catalog]                # CatalogColumns: the --catalog product file
item_id = "sku"
category = "category_path"
category_separator = "/"
[catalog.attributes]     # AttributeColumn: catalog attributes that travel into the model and its answers
organic = "is_organic"                                  # a column of values (yes/no, true/false, 1/0 read as yes/no)
diet = { column = "diet_tags", separator = ";" }        # several values in one cell
decaf = { column = "product_type", match = "DECAF" }    # "yes" where the text matches the regular expression
[assortment]             # AssortmentColumns: the --assortment file (what each store carries)
store_id = "store"
item_id = "sku"
```

A key you set must name a column of the file (else the file is refused, naming the key and the column). A key
left at its default is used when its column exists, so the REES46 layout needs no mapping at all.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recsys.domain.schema import DataValidationError

_ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


class MappedColumns(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: keys that hold options, not column names
    OPTIONS: ClassVar[frozenset[str]] = frozenset()
    #: keys whose column must exist even when left at the default
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    def column_keys(self) -> dict[str, str]:
        """key -> column name for every key that names a column (None keys left out)."""
        return {key: value for key in type(self).model_fields if key not in self.OPTIONS
                and isinstance(value := getattr(self, key), str)}

    def must_exist(self) -> dict[str, str]:
        """key -> column that must be in the file: the required ones and every key set explicitly."""
        keys = self.column_keys()
        return {key: column for key, column in keys.items() if key in self.REQUIRED or key in self.model_fields_set}

    def wanted(self) -> set[str]:
        """Every column the mapping can use (for column-pruned reading)."""
        return set(self.column_keys().values())


class ColumnMapping(MappedColumns):
    """The event log's columns (``[events]``). Defaults are the REES46 layout; only ids and time are required."""

    OPTIONS = frozenset({"timestamp_unit", "types"})
    REQUIRED = ("customer_id", "item_id", "timestamp")

    customer_id: str = "user_id"
    item_id: str = "product_id"
    timestamp: str = "event_time"
    timestamp_unit: Literal["iso", "s", "ms"] = Field(
        "iso", description="iso: date-time text; s or ms: seconds or milliseconds since 1970-01-01 UTC")
    event_type: str | None = Field("event_type", description="without this column every row is a purchase")
    session_id: str | None = Field("user_session", description="without it a session is customer + day")
    store_id: str | None = None
    quantity: str | None = None
    price: str | None = "price"
    #: source event name -> canonical event type; when given, unlisted names are counted and skipped
    types: dict[str, str] | None = None
    # item descriptions carried by the log itself (REES46); a --catalog file replaces them
    brand: str | None = "brand"
    category: str | None = Field("category_code", description="a dot-separated path; its last level is the group")
    category_fallback: str | None = "category_id"
    package_size: str | None = None

    def required(self) -> list[str]:
        return [self.customer_id, self.item_id, self.timestamp]


class CatalogColumns(MappedColumns):
    """The product file's columns (``[catalog]``). Defaults are the ``recsys add-items`` catalog layout.

    ``category`` with ``category_separator`` is a path (``food/dairy/cheese/shredded``): its first level is the
    department, all but the last level the category, and the whole path the substitution group (product type).
    Without a separator ``department``, ``category`` and ``product_type`` are separate columns.
    """

    OPTIONS = frozenset({"category_separator"})
    REQUIRED = ("item_id",)

    item_id: str = "item_id"
    brand: str | None = "brand"
    manufacturer: str | None = Field("manufacturer", description="default: the brand")
    department: str | None = "department"
    category: str | None = "category"
    category_separator: str | None = Field(None, min_length=1, description="category is a path split by this")
    product_type: str | None = "product_type"
    package_size: str | None = "package_size"
    price: str | None = Field("price", description="list price; fills events without a price")
    private_label: str | None = Field("private_label", description="true/false, 1/0, yes/no")
    #: attribute name -> where its values come from (a column name, or an :class:`AttributeColumn`)
    attributes: dict[str, AttributeColumn] = Field(default_factory=dict)

    @field_validator("attributes", mode="before")
    @classmethod
    def _column_names(cls, value: object) -> object:
        if isinstance(value, dict):
            return {name: {"column": column} if isinstance(column, str) else column for name, column in value.items()}
        return value

    @field_validator("attributes")
    @classmethod
    def _attribute_names(cls, value: dict[str, AttributeColumn]) -> dict[str, AttributeColumn]:
        for name in value:
            if not _ATTRIBUTE_NAME.fullmatch(name):
                raise ValueError(f"attribute name {name!r}: use lower-case letters, digits and _ (up to 40)")
        return value

    def must_exist(self) -> dict[str, str]:
        return {**super().must_exist(), **{f"attributes.{name}": a.column for name, a in self.attributes.items()}}

    def wanted(self) -> set[str]:
        return super().wanted() | {a.column for a in self.attributes.values()}


class AttributeColumn(BaseModel):
    """Where one catalog attribute's values come from (``[catalog.attributes]``; a plain string is the column)."""

    model_config = ConfigDict(extra="forbid")

    column: str = Field(min_length=1)
    separator: str | None = Field(None, min_length=1, description="several values in one cell, split by this")
    match: str | None = Field(None, min_length=1, description=(
        "a regular expression (case-insensitive): the value is yes where the column's text matches it, else no"))

    @model_validator(mode="after")
    def _valid_pattern(self) -> AttributeColumn:
        if self.match is not None:
            try:
                re.compile(self.match)
            except re.error as exc:
                raise ValueError(f"match: not a regular expression: {exc}") from None
            if self.separator is not None:
                raise ValueError("match and separator: a matched attribute is yes or no, it has no separator")
        return self


class AssortmentColumns(MappedColumns):
    """The ``--assortment`` file's columns (``[assortment]``): one row per item a store carries."""

    REQUIRED = ("store_id", "item_id")

    store_id: str = "store_id"
    item_id: str = "item_id"


#: each section of a mapping file and its columns
SECTIONS: dict[str, type[MappedColumns]] = {"events": ColumnMapping, "catalog": CatalogColumns,
                                            "assortment": AssortmentColumns}


class DataMapping(BaseModel):
    """A whole ``--mapping`` file: ``[events]``, ``[catalog]`` and ``[assortment]``, all optional."""

    model_config = ConfigDict(extra="forbid")

    events: ColumnMapping = Field(default_factory=ColumnMapping)
    catalog: CatalogColumns = Field(default_factory=CatalogColumns)
    assortment: AssortmentColumns = Field(default_factory=AssortmentColumns)

    @classmethod
    def from_toml(cls, path: str | Path) -> DataMapping:
        """Parse a mapping file; any problem is a :class:`DataValidationError` naming the file and the key."""
        path = Path(path)
        try:
            with path.open("rb") as handle:
                raw = tomllib.load(handle)
        except OSError as exc:
            raise DataValidationError(f"mapping {path}: cannot read: {exc.strerror or exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise DataValidationError(f"mapping {path}: not valid TOML: {exc}") from exc
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise DataValidationError(f"mapping {path}: {_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            section = error["loc"][0] if len(error["loc"]) > 1 else None
            allowed = sorted(SECTIONS[str(section)].model_fields) if section in SECTIONS else list(SECTIONS)
            problems.append(f"unknown key '{key}' (allowed: {', '.join(allowed)})")
        else:
            problems.append(f"key '{key}': {error['msg']}")
    return "; ".join(problems)
