"""Policy files (POLICY.md §3–5): the shipped regions load, versions are effective-dated, and a bad
file stops start-up with a PolicyError naming the file and the field."""

from __future__ import annotations

import importlib.resources
from datetime import date
from decimal import Decimal

import pytest

from gongji.settlement.policy import PolicyError, load_policy_book, parse_policy

pytestmark = pytest.mark.unit

SHIPPED = importlib.resources.files("gongji.settlement").joinpath("policies")
ERENHOT_TEXT = SHIPPED.joinpath("152501.toml").read_text(encoding="utf-8")
PROVINCE_TEXT = SHIPPED.joinpath("990100.toml").read_text(encoding="utf-8")


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"fixture drift: {old!r} is no longer in the shipped file"
    return text.replace(old, new, 1)


# ---------------------------------------------------------------- shipped files


def test_both_shipped_files_load():
    """POLICY §5: both seed regions ship as policy files."""
    book = load_policy_book()
    assert book.regions == ["152501", "990100"]
    assert book.region("152501").name == "二连浩特市"


def test_shipped_files_load_from_a_directory(tmp_path):
    """A deployment may point at its own directory of policy files."""
    (tmp_path / "152501.toml").write_text(ERENHOT_TEXT, encoding="utf-8")
    (tmp_path / "990100.toml").write_text(PROVINCE_TEXT, encoding="utf-8")
    assert load_policy_book(tmp_path).regions == ["152501", "990100"]


def test_empty_directory_is_an_error(tmp_path):
    """No policy at all stops start-up, naming the directory."""
    with pytest.raises(PolicyError, match=str(tmp_path)):
        load_policy_book(tmp_path)


def test_two_files_for_one_region_is_an_error(tmp_path):
    """One policy per insured region (统筹区)."""
    (tmp_path / "a.toml").write_text(ERENHOT_TEXT, encoding="utf-8")
    (tmp_path / "b.toml").write_text(ERENHOT_TEXT, encoding="utf-8")
    with pytest.raises(PolicyError, match="152501"):
        load_policy_book(tmp_path)


def test_erenhot_figures():
    """POLICY §5, Erenhot column (seed 001)."""
    version = load_policy_book().in_force("152501", date(2023, 6, 1))
    rules = version.general_outpatient
    assert rules.deductible_mode == "annual"
    assert rules.annual_deductible == 100000  # 1000.00 yuan
    assert rules.annual_cap.in_service == 400000 and rules.annual_cap.retired == 500000
    assert rules.ratio["3"].in_service == Decimal("0.60") and rules.ratio["3"].retired == Decimal("0.65")
    for band in ("2", "1", "pharmacy"):
        assert rules.ratio[band].in_service == Decimal("0.70") and rules.ratio[band].retired == Decimal("0.75")
    assert rules.family_doctor_bonus == 0
    assert rules.counts_in_fund_cap is True and version.annual_fund_cap is not None
    assert version.med_types == ["11", "14", "21"]


def test_province_figures():
    """POLICY §5, province of seed 000 (990100)."""
    version = load_policy_book().in_force("990100", date(2023, 6, 1))
    rules = version.general_outpatient
    assert rules.deductible_mode == "per_visit"
    assert rules.per_visit_deductible == {"1": 5000, "2": 5000, "3": 5000, "pharmacy": 5000}
    assert rules.grassroots_deductible_exempt is True
    assert rules.ratio["3"].in_service == Decimal("0.50") and rules.ratio["3"].retired == Decimal("0.60")
    for band in ("2", "1", "pharmacy"):
        assert rules.ratio[band].in_service == Decimal("0.55") and rules.ratio[band].retired == Decimal("0.65")
    assert rules.family_doctor_bonus == Decimal("0.05")
    assert rules.annual_cap.in_service == 150000 and rules.annual_cap.retired == 200000
    assert rules.counts_in_fund_cap is False


@pytest.mark.parametrize(
    ("day", "retired_rate"),
    [
        pytest.param(date(2022, 10, 1), Decimal("0.03"), id="first day of the reform: 3%"),
        pytest.param(date(2022, 12, 1), Decimal("0.03"), id="2022-12-01: 3%"),
        pytest.param(date(2022, 12, 31), Decimal("0.03"), id="last day of 2022: 3%"),
        pytest.param(date(2023, 1, 1), Decimal("0.02"), id="2023-01-01: 2%"),
        pytest.param(date(2025, 7, 1), Decimal("0.02"), id="later: still 2%"),
    ],
)
def test_erenhot_retired_crediting_rate_is_effective_dated(day, retired_rate):
    """POLICY §4 crediting: Erenhot retired 3% from 2022-10-01, 2% from 2023-01-01."""
    version = load_policy_book().in_force("152501", day)
    assert version.crediting.retired_rate == retired_rate
    assert version.crediting.in_service_rate == Decimal("0.02")


def test_later_version_keeps_everything_it_does_not_change():
    """The 2023 version lists only crediting.retired_rate; the rest is merged from 2022."""
    book = load_policy_book()
    before = book.in_force("152501", date(2022, 12, 1))
    after = book.in_force("152501", date(2023, 1, 1))
    assert after.effective_from == date(2023, 1, 1)
    assert after.general_outpatient == before.general_outpatient
    assert after.annual_fund_cap == before.annual_fund_cap
    assert after.crediting.in_service_rate == before.crediting.in_service_rate


@pytest.mark.parametrize(
    ("region", "day"),
    [("152501", date(2022, 9, 30)), ("990100", date(2021, 12, 31)), ("152501", date(1990, 1, 1))],
)
def test_before_the_first_version_there_is_no_policy(region, day):
    """Effective dating: before the first effective_from nothing is in force."""
    assert load_policy_book().in_force(region, day) is None


def test_unknown_region_has_no_policy():
    """A region without a file has no policy (the engine then refuses with NOT_INSURED)."""
    book = load_policy_book()
    assert book.region("110000") is None
    assert book.in_force("110000", date(2023, 1, 1)) is None


# ---------------------------------------------------------------- bad files


BAD_FILES = [
    pytest.param(
        _replace(ERENHOT_TEXT, '"3" = { in_service = "0.60"', '"3" = { in_service = 0.60'),
        ["ratio", "in_service", "float"],
        id="float ratio",
    ),
    pytest.param(
        _replace(ERENHOT_TEXT, 'annual_deductible = "1000.00"', "annual_deductible = 1000.0"),
        ["annual_deductible", "float"],
        id="float money",
    ),
    pytest.param(
        _replace(ERENHOT_TEXT, 'pharmacy = { in_service = "0.70", retired = "0.75" }', ""),
        ["general_outpatient", "pharmacy"],
        id="missing band",
    ),
    pytest.param(
        _replace(ERENHOT_TEXT, 'admdvs = "152501"', 'admdvs = "15250A"'),
        ["admdvs"],
        id="bad admdvs",
    ),
    pytest.param(
        _replace(ERENHOT_TEXT, 'admdvs = "152501"', 'admdvs = "1525010"'),
        ["admdvs"],
        id="admdvs 7 digits",
    ),
    pytest.param(
        _replace(ERENHOT_TEXT, '"3" = { in_service = "0.60"', '"3" = { in_service = "1.60"'),
        ["ratio.3.in_service", "0–1"],
        id="ratio above 1",
    ),
    pytest.param(
        _replace(ERENHOT_TEXT, 'retired_rate = "0.02"', 'retired_rate = "2"'),
        ["versions.1.crediting.retired_rate"],
        id="ratio above 1 in a later version",
    ),
    pytest.param(
        _replace(ERENHOT_TEXT, 'annual_deductible = "1000.00"', ""),
        ["general_outpatient", "annual_deductible"],
        id="annual mode without annual_deductible",
    ),
    pytest.param(
        _replace(PROVINCE_TEXT, 'per_visit_deductible = { "1" = "50.00", ', "per_visit_deductible = { "),
        ["general_outpatient", "per_visit_deductible"],
        id="per_visit mode missing a band",
    ),
    pytest.param(
        _replace(ERENHOT_TEXT, "effective_from = 2023-01-01", "effective_from = 2022-01-01"),
        ["versions", "effective_from"],
        id="unsorted versions",
    ),
    pytest.param(
        _replace(ERENHOT_TEXT, "effective_from = 2023-01-01", "effective_from = 2022-10-01"),
        ["versions", "effective_from"],
        id="two versions on one date",
    ),
    pytest.param(
        _replace(ERENHOT_TEXT, 'annual_fund_cap = "150000.00"', ""),
        ["annual_fund_cap"],
        id="counts_in_fund_cap without annual_fund_cap",
    ),
    pytest.param(
        _replace(ERENHOT_TEXT, 'med_types = ["11", "14", "21"]', 'med_types = ["11", "14", "21", "41"]'),
        ["med_types", "41"],
        id="med_type the engine cannot settle",
    ),
    pytest.param(
        _replace(ERENHOT_TEXT, 'deductible_mode = "annual"', 'deductible_mode = "yearly"'),
        ["deductible_mode"],
        id="unknown deductible mode",
    ),
    pytest.param(
        _replace(ERENHOT_TEXT, 'family_doctor_bonus = "0"', 'family_doctor_bonus = "0"\nfamily_doctor_bonsu = "0.05"'),
        ["family_doctor_bonsu"],
        id="misspelt field",
    ),
    pytest.param(
        _replace(ERENHOT_TEXT, 'annual_deductible = "1000.00"', 'annual_deductible = "1000.005"'),
        ["annual_deductible"],
        id="money with three decimals",
    ),
    pytest.param('admdvs = "152501"\nname = "x"\n', ["versions"], id="no versions"),
    pytest.param(ERENHOT_TEXT + "\n[[versions]\n", ["TOML"], id="invalid TOML"),
]


@pytest.mark.parametrize(("text", "named"), BAD_FILES)
def test_bad_file_raises_policy_error_naming_file_and_field(text, named):
    """A bad file stops start-up: PolicyError names the file and the field."""
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "conf/bad-152501.toml")
    message = str(caught.value)
    assert "conf/bad-152501.toml" in message
    for part in named:
        assert part in message, f"{part!r} not named in: {message}"


def test_bad_file_in_a_directory_names_its_path(tmp_path):
    """Loaded from a directory, the error names the file's path."""
    bad = tmp_path / "152501.toml"
    bad.write_text(_replace(ERENHOT_TEXT, '"3" = { in_service = "0.60"', '"3" = { in_service = "1.60"'),
                   encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy_book(tmp_path)
    assert str(bad) in str(caught.value)
    assert "ratio.3.in_service" in str(caught.value)


def test_region_names_label_every_region_by_its_file():
    book = load_policy_book()
    names = book.region_names()
    assert list(names) == book.regions
    assert names["152501"] == book.region("152501").name and "二连浩特" in names["152501"]
