"""The tier-3 config file: the shipped default, overrides and errors naming key and file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierline.engines.hft.config import HftConfig, load_hft_config
from tierline.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_shipped_default_equals_the_built_in_defaults() -> None:
    cfg = load_hft_config(REPO / "hft" / "default.toml")
    assert cfg.to_dict() == HftConfig().to_dict()
    assert cfg.config_id == HftConfig().config_id
    assert cfg.execution.style == "taker" and cfg.latency.model == "constant"
    assert cfg.queue.model == "risk_averse" and cfg.latency.entry_ms == 10.0


def test_overrides_replace_single_keys_and_change_the_id() -> None:
    cfg = HftConfig().with_overrides(style="passive", latency="feed", queue="power_prob")
    assert (cfg.execution.style, cfg.latency.model, cfg.queue.model) == (
        "passive", "feed", "power_prob",
    )  # fmt: skip
    assert cfg.config_id != HftConfig().config_id


def test_int_is_accepted_for_a_float_key(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[latency]\nentry_ms = 25\n[queue]\nmodel = 'power_prob'\npower_n = 2\n")
    cfg = load_hft_config(p)
    assert cfg.latency.entry_ms == 25.0 and cfg.queue.power_n == 2.0
    assert cfg.path == p


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[execution]\nstyle = 'market'\n", r"execution.style = 'market'"),
        ("[execution]\ntimeout = 3\n", r"unknown key\(s\) \['timeout'\] in \[execution\]"),
        ("[latency]\nentry_ms = 'fast'\n", r"latency.entry_ms = 'fast' must be a float"),
        ("[fees]\nmaker = true\n", r"fees.maker = True must be a float"),
        ("[queue]\npower_n = -1.0\n", r"queue.power_n = -1.0: must be > 0"),
        ("[venue]\nx = 1\n", r"unknown section\(s\) \['venue'\]"),
        ("[synthetic\n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key_and_the_file(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_hft_config(p)
    assert str(p) in str(info.value)


def test_missing_named_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_hft_config(tmp_path / "nope.toml")
