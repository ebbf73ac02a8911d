"""The assistance "three lines" (三条线) are law (seed 003): a policy file that breaks them is refused
at load, with the file and the field named.

Seed 003: "the starting payment standard for the objects of subsistence allowances and the extremely
poor shall be cancelled ... [others] shall set different starting payment standards with reference to
a certain proportion of the per capita disposable income ... the relief proportion for the minimum
living standard and the extremely poor shall not be less than 70%, and the relief proportion for
other relief objects ... slightly lower than the minimum living standard."
"""

from __future__ import annotations

import importlib.resources
from datetime import date
from decimal import Decimal

import pytest

from gongji.settlement.policy import PolicyError, load_policy_book, parse_policy

pytestmark = pytest.mark.unit

SHIPPED = importlib.resources.files("gongji.settlement").joinpath("policies")
ERENHOT = SHIPPED.joinpath("152501.toml").read_text(encoding="utf-8")
PROVINCE = SHIPPED.joinpath("990100.toml").read_text(encoding="utf-8")

DIBAO = '{ name = "低保", codes = ["dibao"], ratio = "0.70" }'
TEKUN = '{ name = "特困", codes = ["tekun"], ratio = "0.80" }'
EDGE = '{ name = "低保边缘", codes = ["dibao_edge"], ratio = "0.60", deductible_share = "0.10" }'


def _erenhot(old: str, new: str) -> str:
    assert old in ERENHOT, f"fixture drift: {old!r} is no longer in the shipped file"
    return ERENHOT.replace(old, new, 1)


def _categories(text: str):
    return {c.name: c for c in parse_policy(text, "152501.toml").versions[0].assistance.categories}


def _refused(text: str, *named: str) -> str:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "policies/152501.toml")
    message = str(caught.value)
    for part in ("policies/152501.toml", "versions.0.assistance", *named):
        assert part in message, message
    return message


def test_the_shipped_files_keep_the_three_lines():
    """Erenhot ships 低保 at exactly 0.70, the boundary, and loads."""
    book = load_policy_book()
    erenhot = {c.name: c for c in book.in_force("152501", date(2023, 6, 1)).assistance.categories}
    assert erenhot["低保"].ratio == Decimal("0.70") and erenhot["低保"].deductible_share == 0
    province = {c.name: c for c in book.in_force("990100", date(2023, 6, 1)).assistance.categories}
    assert province["特困"].ratio == Decimal("0.90")


def test_dibao_at_040_is_refused():
    """The issue's case: a 低保 ratio of 0.40 loaded and then paid far below the law."""
    _refused(_erenhot(DIBAO, DIBAO.replace('"0.70"', '"0.40"')), "categories[1] (低保).ratio", "0.40", "0.70")


@pytest.mark.parametrize(("ratio", "accepted"), [("0.70", True), ("0.69", False), ("0.7000", True), ("0.6999", False)])
def test_dibao_ratio_boundary_at_seventy_percent(ratio, accepted):
    text = _erenhot(DIBAO, DIBAO.replace('"0.70"', f'"{ratio}"'))
    if accepted:
        assert _categories(text)["低保"].ratio == Decimal(ratio)
    else:
        _refused(text, "categories[1] (低保).ratio")


@pytest.mark.parametrize(("ratio", "accepted"), [("0.70", True), ("0.69", False)])
def test_tekun_ratio_boundary_at_seventy_percent(ratio, accepted):
    # 特困 must stay at or above 低保's 0.70 floor only; the others' ordering is below the lowest of the two.
    text = _erenhot(TEKUN, TEKUN.replace('"0.80"', f'"{ratio}"'))
    if accepted:
        assert _categories(text)["特困"].ratio == Decimal(ratio)
    else:
        _refused(text, "categories[0] (特困).ratio")


@pytest.mark.parametrize(("share", "accepted"), [("0.00", True), ("0", True), ("0.01", False)])
def test_dibao_and_tekun_have_no_deductible(share, accepted):
    for category, index in ((DIBAO, 1), (TEKUN, 0)):
        text = _erenhot(category, category.replace(" }", f', deductible_share = "{share}" }}'))
        if accepted:
            parse_policy(text, "152501.toml")
        else:
            _refused(text, f"categories[{index}]", "deductible_share", "0.01")


@pytest.mark.parametrize(("share", "accepted"), [("0.01", True), ("0.00", False)])
def test_other_categories_have_a_deductible_share(share, accepted):
    text = _erenhot(EDGE, EDGE.replace('"0.10"', f'"{share}"'))
    if accepted:
        assert _categories(text)["低保边缘"].deductible_share == Decimal(share)
    else:
        _refused(text, "categories[2] (低保边缘).deductible_share")


@pytest.mark.parametrize(("ratio", "accepted"), [("0.69", True), ("0.70", False), ("0.75", False)])
def test_other_categories_ratio_below_dibao_and_tekun(ratio, accepted):
    """低保 is 0.70 in Erenhot, 特困 0.80: the others must stay below the lower, 0.70."""
    text = _erenhot(EDGE, EDGE.replace('"0.60"', f'"{ratio}"'))
    if accepted:
        assert _categories(text)["低保边缘"].ratio == Decimal(ratio)
    else:
        _refused(text, "categories[2] (低保边缘).ratio", "0.70")


def test_ordering_is_against_the_lower_of_dibao_and_tekun():
    """Raise 低保 to 0.85 (above 特困's 0.80): another category at 0.80 is still refused."""
    text = _erenhot(DIBAO, DIBAO.replace('"0.70"', '"0.85"'))
    text = text.replace(EDGE, EDGE.replace('"0.60"', '"0.80"'), 1)
    _refused(text, "categories[2] (低保边缘).ratio", "lowest 0.80")


@pytest.mark.parametrize(("drop", "named"), [(DIBAO, "低保"), (TEKUN, "特困")])
def test_dibao_and_tekun_must_both_be_there(drop, named):
    _refused(_erenhot(f"  {drop},\n", ""), f"no {named} category")


def test_a_category_is_dibao_by_its_code_whatever_its_name():
    text = _erenhot(DIBAO, '{ name = "最低生活保障", codes = ["dibao"], ratio = "0.65" }')
    _refused(text, "categories[1] (最低生活保障).ratio")


def test_a_later_version_breaking_the_lines_is_refused():
    """Versions merge; a later version that lowers 低保 is refused, naming that version."""
    text = ERENHOT + ('\n[[versions]]\neffective_from = 2024-01-01\n[versions.assistance]\ncategories = [\n'
                      f'  {TEKUN},\n  {DIBAO.replace(chr(34) + "0.70" + chr(34), chr(34) + "0.50" + chr(34))},\n]\n')
    with pytest.raises(PolicyError, match=r"versions\.2\.assistance.*categories\[1\] \(低保\)\.ratio"):
        parse_policy(text, "152501.toml")


def test_a_bad_file_in_a_directory_is_named_by_its_path(tmp_path):
    (tmp_path / "152501.toml").write_text(_erenhot(DIBAO, DIBAO.replace('"0.70"', '"0.40"')), encoding="utf-8")
    with pytest.raises(PolicyError, match=str(tmp_path / "152501.toml")):
        load_policy_book(tmp_path)
