"""Package-size parsing: free-text sizes such as ``16 OZ`` or ``6 PK/12 OZ`` to (quantity, unit family).

Quantities are converted to one base unit per family (grams, millilitres, count, centimetres,
square metres, loads), so ``1 LB`` and ``16 OZ`` compare as equal and ``2 LTR`` is 2000 ml.
A multipack (``6/12 OZ``, ``6 PK/12 OZ``, ``12 OZ/6 PK``) becomes its total content.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

#: unit token -> (family, factor to the family's base unit)
UNITS: Final[dict[str, tuple[str, float]]] = {
    # mass, base gram
    "OZ": ("mass", 28.349523125), "OZS": ("mass", 28.349523125), "Z": ("mass", 28.349523125),
    "LB": ("mass", 453.59237), "LBS": ("mass", 453.59237),
    "G": ("mass", 1.0), "GM": ("mass", 1.0), "GR": ("mass", 1.0), "GRAM": ("mass", 1.0),
    "KG": ("mass", 1000.0),
    "MG": ("mass", 0.001),
    # volume, base millilitre
    "FLOZ": ("volume", 29.5735295625), "FL": ("volume", 29.5735295625),
    "ML": ("volume", 1.0), "CL": ("volume", 10.0),
    "L": ("volume", 1000.0), "LT": ("volume", 1000.0), "LTR": ("volume", 1000.0), "LITER": ("volume", 1000.0),
    "QT": ("volume", 946.352946), "PT": ("volume", 473.176473), "CUP": ("volume", 236.5882365),
    "GAL": ("volume", 3785.411784), "GA": ("volume", 3785.411784),
    # count, base item
    "CT": ("count", 1.0), "COUNT": ("count", 1.0), "EA": ("count", 1.0), "EACH": ("count", 1.0),
    "PC": ("count", 1.0), "PCS": ("count", 1.0), "PIECE": ("count", 1.0), "STEM": ("count", 1.0),
    "STEMS": ("count", 1.0), "ROLL": ("count", 1.0), "ROLLS": ("count", 1.0), "SHEETS": ("count", 1.0),
    "KIT": ("count", 1.0), "DZ": ("count", 12.0), "DOZ": ("count", 12.0), "PK": ("count", 1.0),
    "PACK": ("count", 1.0), "PCK": ("count", 1.0), "CP": ("count", 1.0), "USE": ("count", 1.0),
    "USES": ("count", 1.0), "CTN": ("count", 1.0), "BAG": ("count", 1.0), "BX": ("count", 1.0),
    # length, base centimetre
    "IN": ("length", 2.54), "INCH": ("length", 2.54), "CM": ("length", 1.0), "MM": ("length", 0.1),
    "FT": ("length", 30.48), "YD": ("length", 91.44), "M": ("length", 100.0),
    # area, base square metre
    "SQFT": ("area", 0.09290304),
    # laundry loads
    "LOAD": ("load", 1.0), "LOADS": ("load", 1.0), "LD": ("load", 1.0), "LDS": ("load", 1.0),
}

#: families in order of preference when a string names several (content beats packaging count)
FAMILY_PRIORITY: Final[tuple[str, ...]] = ("mass", "volume", "load", "count", "area", "length")
#: units that only count packs: "6 PK/12 OZ" is 6 x 12 OZ
PACK_UNITS: Final[frozenset[str]] = frozenset({"PK", "PACK", "PCK", "CT", "CTN"})
#: display unit per family (base unit shown to shoppers)
DISPLAY_UNIT: Final[dict[str, str]] = {
    "mass": "g", "volume": "ml", "count": "ct", "length": "cm", "area": "m²", "load": "loads",
}
#: quantity a unit price refers to, per family: $ per 100 g, per 100 ml, per item, ...
UNIT_PRICE_BASIS: Final[dict[str, float]] = {
    "mass": 100.0, "volume": 100.0, "count": 1.0, "length": 100.0, "area": 1.0, "load": 1.0,
}

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_UNIT = r"(FL\.?\s*OZ|SQ\.?\s*FT|[A-Z]+)"
_PAIR = re.compile(_NUMBER + r"\s*-?\s*" + _UNIT)
_MULTIPACK = re.compile(r"^\s*(\d+)\s*/\s*" + _NUMBER + r"\s*" + _UNIT)
_BARE_UNIT = re.compile(r"^\s*(HALF\s+)?([A-Z]+)\s*$")


@dataclass(frozen=True, slots=True)
class PackageSize:
    """A parsed package size: ``quantity`` in the base unit of ``family``."""

    quantity: float
    family: str

    def display(self) -> str:
        """Human text in the family's base unit, e.g. ``453.6 g``."""
        return format_quantity(self.quantity, self.family)


def format_quantity(quantity: float, family: str) -> str:
    unit = DISPLAY_UNIT.get(family, family)
    text = f"{quantity:.0f}" if quantity >= 100 or float(quantity).is_integer() else f"{quantity:.3g}"
    return f"{text} {unit}"


def _normalise_unit(token: str) -> str:
    return re.sub(r"[\s.]", "", token.upper())


def parse_package_size(text: object) -> PackageSize | None:
    """Parse one package-size string; ``None`` when it names no known unit (``LARGE``, ``KIT/EACH`` ...).

    >>> parse_package_size("1 LB")
    PackageSize(quantity=453.59237, family='mass')
    >>> parse_package_size("6 PK/12 OZ").family
    'mass'
    """
    if not isinstance(text, str):
        return None
    upper = text.upper().strip()
    if not upper:
        return None
    multipack = _MULTIPACK.match(upper)
    pack_count = 1.0
    if multipack:
        numerator, denominator = multipack.group(1), multipack.group(2)
        if numerator in ("1", "3") and denominator in ("2", "4", "8"):  # "1/2 GAL" is half a gallon
            pack_count = float(numerator) / float(denominator)
            upper = "1" + upper[multipack.end(2):]
        else:  # "6/12 OZ" is six 12 OZ units
            pack_count = float(numerator)
            upper = upper[multipack.start(2):]

    found: dict[str, float] = {}
    packs = 1.0
    for number, unit_token in _PAIR.findall(upper):
        unit = _normalise_unit(unit_token)
        if unit not in UNITS:
            continue
        family, factor = UNITS[unit]
        value = float(number) * factor
        if unit in PACK_UNITS and family == "count":
            packs = max(packs, float(number))
        found.setdefault(family, value)
    if not found:
        bare = _BARE_UNIT.match(upper)
        if bare and bare.group(2) in UNITS:
            family, factor = UNITS[bare.group(2)]
            found[family] = (0.5 if bare.group(1) else 1.0) * factor
        elif "EACH" in upper.split("/") or upper == "EA":
            found["count"] = 1.0
    if not found:
        return None
    family = next(f for f in FAMILY_PRIORITY if f in found)
    quantity = found[family] * pack_count
    if family != "count" and packs > 1:
        quantity *= packs  # "6 PK/12 OZ": the content of the whole pack
    if not math.isfinite(quantity) or quantity <= 0:
        return None
    return PackageSize(quantity=quantity, family=family)


def parse_package_sizes(values: pd.Series) -> pd.DataFrame:
    """Vectorised over a column: returns ``size_qty`` (float, NaN if unknown) and ``size_family`` (str or None).

    Distinct strings are parsed once (a catalog has a few thousand distinct sizes).
    """
    parsed = {u: parse_package_size(u) for u in pd.unique(values.dropna())}

    def quantity(value: object) -> float:
        size = parsed.get(value)
        return size.quantity if size else np.nan

    def family(value: object) -> str | None:
        size = parsed.get(value)
        return size.family if size else None

    qty, fam = values.map(quantity), values.map(family)
    return pd.DataFrame({"size_qty": qty.astype("float64"), "size_family": fam.astype("object")}, index=values.index)
