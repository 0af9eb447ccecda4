"""Reasons a storefront can show: each one a code with its values (``reason_codes``, for a storefront that renders
its own words) and a text rendered from the message file of one locale (``messages/<locale>.json``) with the money
in one currency (ISO 4217).

A message file holds the locale's decimal separator, how money is written (``"{symbol}{amount}"`` or
``"{amount} {symbol}"``) and a template per reason code; the code's values fill the template.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Final

#: every reason code, in the order an answer lists them
REASON_CODES: Final[tuple[str, ...]] = (
    "same_type", "same_size", "other_size", "shared_attribute", "shared_flag", "usual_brand", "same_brand",
    "store_brand", "accepted_before", "bought_before", "accepted_instead", "bought_instead", "viewed_together",
    "cheaper", "more_expensive", "same_price", "price_protected", "new_in_catalog", "widened")
#: symbols of common currencies; any other ISO 4217 code is written as the code itself
CURRENCY_SYMBOLS: Final[dict[str, str]] = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CAD": "CA$",
                                           "AUD": "A$", "CHF": "CHF", "SEK": "kr", "NOK": "kr", "DKK": "kr",
                                           "PLN": "zł"}
_ISO_4217: Final[re.Pattern[str]] = re.compile(r"[A-Z]{3}")


def locales() -> tuple[str, ...]:
    """The locales with a message file."""
    files = resources.files("recsys.query").joinpath("messages").iterdir()
    return tuple(sorted(f.name.removesuffix(".json") for f in files if f.name.endswith(".json")))


@cache
def _message_file(locale: str) -> dict[str, object]:
    path = resources.files("recsys.query").joinpath("messages", f"{locale}.json")
    loaded: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


class Messages:
    """The reason texts of one locale, with money in one currency (raises ``ValueError`` for a locale without a
    message file or a currency that is not an ISO 4217 code)."""

    def __init__(self, locale: str = "en", currency: str = "USD") -> None:
        if locale not in locales():
            raise ValueError(f"unknown locale {locale!r}: use one of {', '.join(locales())}")
        if not _ISO_4217.fullmatch(currency):
            raise ValueError(f"currency {currency!r} is not an ISO 4217 code (three capital letters, e.g. EUR)")
        messages = _message_file(locale)
        templates = messages["reasons"]
        missing = [c for c in REASON_CODES if not isinstance(templates, dict) or c not in templates]
        if missing:
            raise ValueError(f"message file {locale}.json has no text for {', '.join(missing)}")
        assert isinstance(templates, dict)
        self.locale, self.currency = locale, currency
        self._templates: dict[str, str] = templates
        self._decimal, self._money = str(messages["decimal"]), str(messages["money"])
        self._symbol = CURRENCY_SYMBOLS.get(currency, currency)

    def text(self, code: str, **values: object) -> str:
        """The text of reason ``code`` with its values; ``amount`` is money (a float) and written as such."""
        if "amount" in values:
            values["amount"] = self.money(float(values["amount"]))  # type: ignore[arg-type]
        return self._templates[code].format(**values)

    def money(self, amount: float) -> str:
        """``amount`` (not negative) in this locale and currency, two decimals."""
        return self._money.format(symbol=self._symbol, amount=f"{amount:.2f}".replace(".", self._decimal))
