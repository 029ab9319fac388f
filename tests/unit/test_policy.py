"""The promotion policy: the shipped default loads, and bad files are refused by file and key."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tierline.errors import ConfigError
from tierline.promotion.policy import load_policy

REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "promotion" / "policy.toml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = DEFAULT.read_text()
    assert old in text, old
    return _write(tmp_path, text.replace(old, new, 1))


def test_default_policy_loads_with_its_documented_values() -> None:
    policy = load_policy(DEFAULT)
    assert policy.sha256 == hashlib.sha256(DEFAULT.read_bytes()).hexdigest()
    assert policy.data.allow_synthetic is False
    assert (policy.tier1.min_oos_sharpe, policy.tier1.min_dsr) == (0.5, 0.95)
    assert (policy.tier1.max_pbo, policy.tier1.min_trades) == (0.5, 30)
    assert policy.tier2.require_parity is True and policy.tier2.max_drawdown == 0.30
    assert policy.tier3.required is True and policy.tier3.allow_synthetic_l2 is False
    assert policy.tier3.max_shortfall_bps == 10.0 and policy.tier3.min_fill_ratio == 0.95
    assert policy.live.stake_amount == "unlimited" and policy.live.max_open_trades == 1
    assert policy.live.stoploss is None  # commented out in the default
    assert policy.live.protections.max_drawdown.max_allowed_drawdown == 0.20
    assert policy.live.protections.stoploss_guard.only_per_pair is False


def test_every_key_of_the_default_is_documented_by_a_comment_above_it() -> None:
    lines = DEFAULT.read_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert lines[i - 1].startswith("#"), f"undocumented key: {line!r}"


def test_policy_env_var_and_default_path_are_used(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = _variant(tmp_path, "min_trades = 30", "min_trades = 7")
    monkeypatch.setenv("TIERLINE_POLICY", str(path))
    assert load_policy().tier1.min_trades == 7
    monkeypatch.delenv("TIERLINE_POLICY")
    monkeypatch.chdir(REPO)
    assert load_policy().tier1.min_trades == 30


def test_stake_number_and_stoploss_are_read(tmp_path: Path) -> None:
    path = _variant(tmp_path, 'stake_amount = "unlimited"', "stake_amount = 250")
    path = _write(tmp_path, path.read_text().replace("# stoploss = -0.10", "stoploss = -0.1"))
    live = load_policy(path).live
    assert live.stake_amount == 250.0 and live.stoploss == -0.1


def test_data_section_is_optional(tmp_path: Path) -> None:
    text = DEFAULT.read_text()
    start, end = text.index("[data]"), text.index("[tier1]")
    policy = load_policy(_write(tmp_path, text[:start] + text[end:]))
    assert policy.data.allow_synthetic is False


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("min_dsr = 0.95", "min_dsr = 0.95\nmin_dssr = 1", r"\[tier1\] min_dssr: unknown key"),
        ("min_dsr = 0.95", 'min_dsr = "high"', r"\[tier1\] min_dsr: expected a number"),
        ("min_dsr = 0.95", "min_dsr = 1.5", r"\[tier1\] min_dsr: 1.5 is out of range \[0, 1\]"),
        ("min_trades = 30", "min_trades = 30.5", r"\[tier1\] min_trades: expected an integer"),
        ("min_trades = 30", "min_trades = -1", r"\[tier1\] min_trades: -1 is out of range"),
        ("require_parity = true", "require_parity = 1", r"\[tier2\] require_parity: expected"),
        ("max_drawdown = 0.30", "max_drawdown = 0", r"\[tier2\] max_drawdown: 0.0 is out of"),
        ("required = true", "", r"\[tier3\] required: missing"),
        ("min_fill_ratio = 0.95", "min_fill_ratio = true", r"\[tier3\] min_fill_ratio: expected"),
        ('stake_amount = "unlimited"', 'stake_amount = "all"', r"\[live\] stake_amount: expected"),
        ('stake_amount = "unlimited"', "stake_amount = 0", r"\[live\] stake_amount: 0.0 is out"),
        ("# stoploss = -0.10", "stoploss = 0.1", r"\[live\] stoploss: 0.1 is out of range"),
        ("max_open_trades = 1", "max_open_trades = 0", r"\[live\] max_open_trades: 0 is out"),
        (
            "max_allowed_drawdown = 0.20",
            "max_allowed_drawdown = 2",
            r"\[live.protections.max_drawdown\] max_allowed_drawdown: 2.0 is out of range",
        ),
        (
            "only_per_pair = false",
            'only_per_pair = "no"',
            r"\[live.protections.stoploss_guard\] only_per_pair: expected true or false",
        ),
        ("[tier2]", "[tier_2]", r"\[tier_2\]: unknown section"),
        ("allow_synthetic = false", "allow_synthetic = 0", r"\[data\] allow_synthetic: expected"),
    ],
)
def test_bad_policy_is_refused_naming_file_and_key(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    path = _variant(tmp_path, old, new)
    with pytest.raises(ConfigError, match=message) as info:
        load_policy(path)
    assert str(path) in str(info.value)


def test_missing_section_and_missing_file_and_bad_toml_are_refused(tmp_path: Path) -> None:
    text = DEFAULT.read_text()
    start, end = text.index("[tier3]"), text.index("[live]")
    with pytest.raises(ConfigError, match=r"\[tier3\]: missing section"):
        load_policy(_write(tmp_path, text[:start] + text[end:]))
    with pytest.raises(ConfigError, match="cannot be read"):
        load_policy(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_policy(_write(tmp_path, "[tier1\nmin_dsr = "))
    with pytest.raises(ConfigError, match=r"\[live.protections\] stoploss_guard: missing"):
        load_policy(_write(tmp_path, text[: text.index("[live.protections.stoploss_guard]")]))
