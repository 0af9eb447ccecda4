import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recsys.domain.sizes import parse_package_size, parse_package_sizes
from training.loaders.completejourney import cj_table


@pytest.mark.parametrize(
    ("text", "quantity", "family"),
    [
        ("16 OZ", 453.592, "mass"),
        ("EX   16 OZ", 453.592, "mass"),
        ("1 LB", 453.592, "mass"),
        (".29 OZ", 8.221, "mass"),
        ("12 CT", 12.0, "count"),
        ("2 LTR", 2000.0, "volume"),
        ("750 ML", 750.0, "volume"),
        ("1/2 GAL", 1892.706, "volume"),
        ("64 FL OZ", 1892.706, "volume"),
        ("6/12 OZ", 6 * 340.194, "mass"),
        ("6 PK/12 OZ", 6 * 340.194, "mass"),
        ("8 CT/3.5 CM", 8.0, "count"),
        ("KIT/EACH", 1.0, "count"),
        ("300 CT(1)", 300.0, "count"),
        ("1 DZ", 12.0, "count"),
        ("32 LOADS", 32.0, "load"),
    ],
)
def test_parses_real_formats(text: str, quantity: float, family: str) -> None:
    parsed = parse_package_size(text)
    assert parsed is not None
    assert parsed.family == family
    assert parsed.quantity == pytest.approx(quantity, rel=1e-3)


def test_units_convert_to_one_base() -> None:
    assert parse_package_size("1 LB") == parse_package_size("16 OZ")
    assert parse_package_size("1 L").quantity == pytest.approx(parse_package_size("1000 ML").quantity)


@pytest.mark.parametrize("text", ["LARGE", "", "   ", None, "SIZE 4"])
def test_no_unit_is_unknown(text: object) -> None:
    assert parse_package_size(text) is None


@pytest.mark.realdata
def test_parses_over_90_percent_of_the_complete_journey() -> None:
    sizes = cj_table("products")["package_size"].dropna()
    sizes = sizes[sizes.str.strip() != ""]
    parsed = parse_package_sizes(sizes)
    rate = parsed["size_family"].notna().mean()
    assert rate >= 0.90, f"parse rate {rate:.3f}"
    assert (parsed["size_qty"].dropna() > 0).all()


@given(st.text(max_size=40))
def test_never_raises_and_quantities_are_positive(text: str) -> None:
    parsed = parse_package_size(text)
    if parsed is not None:
        assert math.isfinite(parsed.quantity) and parsed.quantity > 0
