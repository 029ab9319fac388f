"""The ccxt exchange set-up of `tierline data ingest`: API URL rewriting and Binance options."""

from __future__ import annotations

import pytest

from tierline.data.ingest import make_exchange, rewrite_api_urls
from tierline.errors import ConfigError


def _flat(node: object) -> list[str]:
    if isinstance(node, dict):
        return [u for v in node.values() for u in _flat(v)]
    if isinstance(node, list):
        return [u for v in node for u in _flat(v)]
    return [node] if isinstance(node, str) else []


def test_rewrite_points_every_binance_api_url_at_the_base_and_keeps_paths() -> None:
    ex = make_exchange("binance")
    before = dict(ex.urls["api"])

    n = rewrite_api_urls(ex, "http://127.0.0.1:8123")

    assert n == len(before)
    assert ex.urls["api"]["public"] == "http://127.0.0.1:8123/api/v3"
    assert ex.urls["api"]["fapiPublic"] == "http://127.0.0.1:8123/fapi/v1"
    assert ex.urls["api"]["sapi"] == "http://127.0.0.1:8123/sapi/v1"
    assert all(u.startswith("http://127.0.0.1:8123/") for u in _flat(ex.urls["api"]))
    # another instance keeps the real hosts
    assert make_exchange("binance").urls["api"]["public"] == "https://api.binance.com/api/v3"


def test_rewrite_puts_a_base_path_first_and_replaces_hostname_placeholders() -> None:
    ex = make_exchange("okx")
    assert "{hostname}" in ex.urls["api"]["rest"]

    rewrite_api_urls(ex, "https://mirror.example:9443/okx/")

    assert ex.urls["api"]["rest"] == "https://mirror.example:9443/okx"


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1", "127.0.0.1:8000", "http://user:secret@127.0.0.1:1", "http://h/?a=1"],
)
def test_rewrite_refuses_an_invalid_base_url_without_echoing_secrets(url: str) -> None:
    with pytest.raises(ConfigError, match="is not valid") as e:
        rewrite_api_urls(make_exchange("binance"), url)
    assert "secret" not in str(e.value)


def test_binance_loads_only_the_market_type_of_the_symbol() -> None:
    spot = make_exchange("binance", symbol="BTC/USDT")
    perp = make_exchange("binance", symbol="BTC/USDT:USDT")

    assert spot.options["fetchMarkets"]["types"] == ["spot"]
    assert spot.options["fetchMargins"] is False
    assert spot.options["crossMarginPairsData"] == []
    assert perp.options["fetchMarkets"]["types"] == ["linear"]
    assert perp.options["defaultSubType"] == "linear"
    assert spot.enableRateLimit is True
    assert not spot.apiKey


def test_unknown_exchange_id_suggests_close_ids() -> None:
    with pytest.raises(ConfigError, match=r"unknown exchange 'krakn'.*did you mean .*kraken"):
        make_exchange("krakn")
