"""Freqtrade engine: freqtrade's own backtester gives the reference's trades, offline.

Real data from ../shared/data: Binance BTC/USDT and ETH/USDT 5m (one month each) and Bittrex
2018 ADA/BTC (missing bars) and XLM/BTC 5m (tiny prices, tick 1e-8); every built-in strategy
with two parameter sets. Then scenario tables for the edge cases (signal on the last bar,
entry and exit on consecutive bars, both signals on one bar, a gap, a position open at the
end, warm-up), and ``freqtrade backtesting`` run as a subprocess from the repo root.

No network: a module fixture makes any socket connect outside 127.0.0.1 fail.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from tierline.core import reference
from tierline.core.conventions import ExecutionConfig
from tierline.core.instruments import InstrumentSpec, instrument_for
from tierline.core.metrics import compute_metrics
from tierline.core.parity import ParityTolerance, compare_trades
from tierline.core.result import BacktestResult
from tierline.errors import ConfigError, EngineError
from tierline.strategy.contract import Int, Strategy, strategy
from tierline.strategy.registry import get_strategy

REPO = Path(__file__).resolve().parents[2]
USERDIR = REPO / "freqtrade" / "user_data"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module", autouse=True)
def no_network() -> Iterator[list[Any]]:
    """Fail any socket connect outside 127.0.0.1 (and point the workspace paths at the repo)."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    attempts: list[Any] = []

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family == getattr(socket, "AF_UNIX", None):
            return
        host = address[0] if isinstance(address, tuple) else str(address)
        if host not in _LOOPBACK:
            attempts.append(address)
            raise AssertionError(f"network access outside 127.0.0.1 attempted: {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", connect)
        mp.setattr(socket.socket, "connect_ex", connect_ex)
        mp.setenv("TIERLINE_FREQTRADE_USERDIR", str(USERDIR))
        mp.setenv("TIERLINE_VENUES", str(REPO / "nautilus" / "venues.toml"))
        yield attempts
    assert not attempts, f"network access attempted: {attempts}"


def _feather_bars(path: Path, start: str | None = None, end: str | None = None) -> pl.DataFrame:
    df = pd.read_feather(path)
    bars = pl.from_pandas(df.rename(columns={"date": "ts"})).with_columns(
        pl.col("ts").cast(pl.Datetime("ns", "UTC"))
    )
    if start is not None:
        bars = bars.filter(
            pl.col("ts").is_between(
                pl.lit(start).str.to_datetime(time_zone="UTC"),
                pl.lit(end).str.to_datetime(time_zone="UTC"),
                closed="left",
            )
        )
    return bars


#: key -> (catalog exchange, symbol, file under ohlcv/, first day, end, initial cash)
DATASETS: dict[str, tuple[str, str, str, str | None, str | None, float]] = {
    "btc": (
        "binance",
        "BTC/USDT",
        "binance_spot_2024_genetrader/BTC_USDT-5m.feather",
        "2024-03-01",
        "2024-04-01",
        10_000.0,
    ),
    "eth": (
        "binance",
        "ETH/USDT",
        "binance_spot_2024_genetrader/ETH_USDT-5m.feather",
        "2024-06-01",
        "2024-07-01",
        10_000.0,
    ),
    "ada": ("bittrex", "ADA/BTC", "bittrex_2018_freqtrade/ADA_BTC-5m.feather", None, None, 1.0),
    "xlm": ("bittrex", "XLM/BTC", "bittrex_2018_freqtrade/XLM_BTC-5m.feather", None, None, 1.0),
}


@pytest.fixture(scope="module")
def market(shared_data: Path) -> Callable[[str], tuple[pl.DataFrame, InstrumentSpec, float]]:
    """Bars, instrument and initial cash of a data set, loaded once."""
    cache: dict[str, tuple[pl.DataFrame, InstrumentSpec, float]] = {}

    def get(key: str) -> tuple[pl.DataFrame, InstrumentSpec, float]:
        if key not in cache:
            exchange, symbol, rel, start, end, cash = DATASETS[key]
            bars = _feather_bars(shared_data / "ohlcv" / rel, start, end)
            cache[key] = (bars, instrument_for(exchange, symbol, bars), cash)
        return cache[key]

    return get


def _gaps(bars: pl.DataFrame) -> int:
    return int((bars["ts"].diff().dt.total_seconds() > 300).sum())


# ---------------------------------------------------------------------- parity helpers
def _assert_parity(
    ft: BacktestResult, ref: BacktestResult, spec: InstrumentSpec, cash: float
) -> dict[str, float]:
    """Assert the design tolerance: same bars, prices to the tick, return 1e-6, P&L 0.01 %."""
    a, b = ft.trades, ref.trades
    assert len(a) == len(b), f"{len(a)} freqtrade trades vs {len(b)} reference trades"
    assert a["entry_ts"].to_list() == b["entry_ts"].to_list()
    assert a["exit_ts"].to_list() == b["exit_ts"].to_list()
    d_price = 0.0
    d_ret = 0.0
    if len(a):
        d_price = max(
            float((a["entry_price"] - b["entry_price"]).abs().max()),  # type: ignore[arg-type]
            float((a["exit_price"] - b["exit_price"]).abs().max()),  # type: ignore[arg-type]
        )
        d_ret = float((a["return"] - b["return"]).abs().max())  # type: ignore[arg-type]
    assert d_price < spec.tick / 2
    assert d_ret <= 1e-6
    pnl_a, pnl_b = float(a["pnl"].sum()), float(b["pnl"].sum())
    rel = abs(pnl_a - pnl_b) / max(abs(pnl_b), 1e-9 * cash)
    assert rel <= 1e-4, f"total P&L {pnl_a} vs {pnl_b}"
    parity = compare_trades(
        b, a, engine="freqtrade", tolerance=ParityTolerance(tick=spec.tick), initial_cash=cash
    )
    assert parity.passed, parity.summary()
    # equity: one row per bar, marked at the close, as the reference marks it
    assert ft.equity["ts"].to_list() == ref.equity["ts"].to_list()
    eq = np.abs(ft.equity["equity"].to_numpy() - ref.equity["equity"].to_numpy())
    assert float(eq.max()) <= 1e-6 * cash
    return {"d_price_ticks": d_price / spec.tick, "d_return": d_ret, "pnl_rel": rel}


def _run_both(
    strat: Strategy,
    bars: pl.DataFrame,
    params: Mapping[str, Any],
    config: ExecutionConfig,
    spec: InstrumentSpec,
) -> tuple[BacktestResult, BacktestResult]:
    from tierline.engines import freqtrade

    return (
        freqtrade.run(strat, bars, params, config, instrument=spec),
        reference.run(strat, bars, params, config),
    )


# ---------------------------------------------------------------------- real data
PARAM_SETS: dict[str, list[dict[str, int]]] = {
    "sma_cross": [{"fast": 10, "slow": 50}, {"fast": 20, "slow": 100}],
    "rsi_reversion": [
        {"period": 14, "lower": 30, "upper": 70},
        {"period": 6, "lower": 20, "upper": 80},
    ],
    "donchian_breakout": [{"entry": 20, "exit": 10}, {"entry": 50, "exit": 25}],
}
CASES = [
    pytest.param(key, name, params, id=f"{key}-{name}-{'-'.join(map(str, params.values()))}")
    for key in DATASETS
    for name, sets in PARAM_SETS.items()
    for params in sets
]


@pytest.mark.parametrize(("key", "name", "params"), CASES)
def test_freqtrade_trades_equal_reference_on_real_data(
    market: Callable[[str], tuple[pl.DataFrame, InstrumentSpec, float]],
    key: str,
    name: str,
    params: dict[str, int],
) -> None:
    bars, spec, cash = market(key)
    strat = get_strategy(name)
    ft, ref = _run_both(strat, bars, params, ExecutionConfig(initial_cash=cash), spec)
    assert len(ref.trades) >= 20  # not a vacuous comparison
    _assert_parity(ft, ref, spec, cash)
    assert ft.engine == "freqtrade"
    assert ft.extra["startup_candle_count"] == strat.warmup(params) - 1
    m_ft = compute_metrics(ft.trades, ft.equity, initial_cash=cash)
    m_ref = compute_metrics(ref.trades, ref.equity, initial_cash=cash)
    assert m_ft["trades"] == m_ref["trades"]
    assert m_ft["total_return"] == pytest.approx(m_ref["total_return"], abs=1e-6)


def test_real_data_sets_cover_gaps_and_tiny_prices(
    market: Callable[[str], tuple[pl.DataFrame, InstrumentSpec, float]],
) -> None:
    ada, ada_spec, _ = market("ada")
    btc, btc_spec, _ = market("btc")
    assert _gaps(ada) >= 3  # ADA/BTC 2018 misses bars: freqtrade must not fill them
    assert ada_spec.tick == 1e-8 and float(ada["close"].max()) < 1e-3
    assert _gaps(btc) == 0 and btc_spec.min_notional == 10.0


def test_fixed_stake_equals_reference(
    market: Callable[[str], tuple[pl.DataFrame, InstrumentSpec, float]],
) -> None:
    bars, spec, cash = market("eth")
    config = ExecutionConfig(initial_cash=cash, stake=1_000.0)
    ft, ref = _run_both(get_strategy("sma_cross"), bars, {"fast": 10, "slow": 50}, config, spec)
    _assert_parity(ft, ref, spec, cash)
    cost = ft.trades["qty"] * ft.trades["entry_price"] * (1 + config.fee)
    assert float((cost - 1_000.0).abs().max()) < 1e-3  # type: ignore[arg-type]


def test_notes_say_how_bittrex_ran(
    market: Callable[[str], tuple[pl.DataFrame, InstrumentSpec, float]],
) -> None:
    from tierline.engines import freqtrade

    bars, _, cash = market("ada")
    res = freqtrade.run(
        get_strategy("sma_cross"),
        bars,
        {},
        ExecutionConfig(initial_cash=cash),
        exchange="bittrex",
        symbol="ADA/BTC",
    )
    assert res.extra["pair"] == "ADA/BTC"
    assert any("'binance'" in n and "bittrex ADA/BTC" in n for n in res.notes)
    assert res.extra["freqtrade_exchange"] == "binance"
    assert res.extra["exit_reasons"].keys() <= {"exit_signal", "force_exit"}


# ---------------------------------------------------------------------- scenario tables
def _scripted(
    name: str,
    bars: pl.DataFrame,
    enter: list[int],
    exit_: list[int],
    *,
    warmup: int = 1,
    by_date: bool = True,
) -> Strategy:
    """A strategy whose signals sit on given bars (indices into ``bars``).

    ``by_date``: a signal is tied to its bar's open time, so it stays on that bar whatever the
    engine adds around it; otherwise to a position in the frame (it would move if freqtrade
    filled a gap).
    """
    dates = bars["ts"].cast(pl.Datetime("ns")).to_numpy().astype("datetime64[ns]")
    enter_at = {dates[t] for t in enter}
    exit_at = {dates[t] for t in exit_}

    @strategy(name=name, params=[Int("k", 0, 1, default=0)], warmup=lambda p: warmup)
    def scripted(frame: pd.DataFrame, p: Mapping[str, Any]) -> pd.DataFrame:
        n = len(frame)
        if by_date:
            d = frame["date"].dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
            e = np.array([v in enter_at for v in d], dtype=bool)
            x = np.array([v in exit_at for v in d], dtype=bool)
        else:
            e = np.zeros(n, dtype=bool)
            x = np.zeros(n, dtype=bool)
            e[[t for t in enter if t < n]] = True
            x[[t for t in exit_ if t < n]] = True
        return pd.DataFrame({"enter_long": e, "exit_long": x}, index=frame.index)

    return scripted


@pytest.fixture(scope="module")
def scenario_bars(
    market: Callable[[str], tuple[pl.DataFrame, InstrumentSpec, float]],
) -> pl.DataFrame:
    """80 real BTC/USDT 5m bars (bar indices 0..79 in the scenario tables)."""
    bars, _, _ = market("btc")
    return bars.slice(60, 80)


def _ts(bars: pl.DataFrame, i: int) -> Any:
    return bars["ts"][i]


LAST = 79
SCENARIOS = [
    # (id, enter bars, exit bars, expected trades as (entry bar, exit bar); None = forced exit)
    ("signal-on-last-bar-is-never-filled", [LAST], [], []),
    ("entry-signal-on-second-to-last-bar-fills-at-last-open", [LAST - 1], [], [(LAST, None)]),
    ("exit-signal-on-last-bar-closes-at-last-close", [10], [LAST], [(11, None)]),
    ("entry-and-exit-on-consecutive-bars", [10, 30], [11, 31], [(11, 12), (31, 32)]),
    ("entry-fills-on-the-bar-after-an-exit", [10, 12], [11], [(11, 12), (13, None)]),
    ("open-position-is-closed-at-the-end", [5], [], [(6, None)]),
    # both signals on one bar: the exit wins in a position, the entry wins when flat
    ("both-signals-in-position-exit-wins", [10, 15], [15, 20], [(11, 16)]),
    ("both-signals-when-flat-entry-wins", [10, 20], [12, 20, 25], [(11, 13), (21, 26)]),
    (
        "both-signals-on-every-bar-alternate",
        list(range(10, 20)),
        list(range(10, 20)),
        [(11, 12), (13, 14), (15, 16), (17, 18), (19, 20)],
    ),
]


@pytest.mark.parametrize(
    ("enter", "exit_", "expected"),
    [pytest.param(e, x, want, id=sid) for sid, e, x, want in SCENARIOS],
)
def test_scenario_trades_are_the_expected_bars_in_both_engines(
    scenario_bars: pl.DataFrame,
    enter: list[int],
    exit_: list[int],
    expected: list[tuple[int, int | None]],
) -> None:
    bars = scenario_bars
    spec = instrument_for("binance", "BTC/USDT")
    strat = _scripted("scripted", bars, enter, exit_)
    ft, ref = _run_both(strat, bars, {}, ExecutionConfig(), spec)
    last_close_time = _ts(bars, LAST) + timedelta(minutes=5)
    want_entry = [_ts(bars, i) for i, _ in expected]
    want_exit = [_ts(bars, j) if j is not None else last_close_time for _, j in expected]
    for res in (ref, ft):
        assert res.trades["entry_ts"].to_list() == want_entry
        assert res.trades["exit_ts"].to_list() == want_exit
        assert res.trades["entry_price"].to_list() == [bars["open"][i] for i, _ in expected]
        if expected and expected[-1][1] is None:  # forced exit at the last close
            assert res.trades["exit_price"][-1] == bars["close"][LAST]
    _assert_parity(ft, ref, spec, 10_000.0)


def test_gap_is_not_filled_and_signal_before_it_fills_after_it(
    scenario_bars: pl.DataFrame,
) -> None:
    # drop bars 30..35: the bar after 29 is the old bar 36 (30 minutes later)
    bars = pl.concat([scenario_bars.slice(0, 30), scenario_bars.slice(36)])
    assert _gaps(bars) == 1
    spec = instrument_for("binance", "BTC/USDT")
    # positional signals: if freqtrade filled the gap, bars after it would shift by six
    strat = _scripted("scripted_positions", bars, [29, 40], [33, 60], by_date=False)
    ft, ref = _run_both(strat, bars, {}, ExecutionConfig(), spec)
    assert ft.trades["entry_ts"].to_list() == [_ts(bars, 30), _ts(bars, 41)]
    assert ft.trades["entry_ts"][0] - bars["ts"][29] == timedelta(minutes=35)
    assert ft.trades["exit_ts"].to_list() == [_ts(bars, 34), _ts(bars, 61)]
    _assert_parity(ft, ref, spec, 10_000.0)


def test_first_bar_that_can_signal_keeps_its_signal(scenario_bars: pl.DataFrame) -> None:
    # warm-up 20: bar 19 is the first that may signal; startup_candle_count = 19 keeps it
    strat = _scripted("scripted_warmup", scenario_bars, [19], [30], warmup=20)
    spec = instrument_for("binance", "BTC/USDT")
    ft, ref = _run_both(strat, scenario_bars, {}, ExecutionConfig(), spec)
    assert ft.extra["startup_candle_count"] == 19
    assert ft.trades["entry_ts"].to_list() == [_ts(scenario_bars, 20)]
    _assert_parity(ft, ref, spec, 10_000.0)


def test_signal_inside_the_warm_up_is_dropped_by_freqtrade_and_noted(
    scenario_bars: pl.DataFrame,
) -> None:
    # A strategy that breaks its own warm-up promise: freqtrade discards the first
    # warmup - 1 bars' signals, the reference does not. This difference is stated in notes.
    strat = _scripted("scripted_early", scenario_bars, [5, 40], [10, 50], warmup=20)
    spec = instrument_for("binance", "BTC/USDT")
    ft, ref = _run_both(strat, scenario_bars, {}, ExecutionConfig(), spec)
    assert ref.trades["entry_ts"].to_list() == [_ts(scenario_bars, 6), _ts(scenario_bars, 41)]
    assert ft.trades["entry_ts"].to_list() == [_ts(scenario_bars, 41)]
    assert any("2 signal(s) fell on the first 19 bars" in n for n in ft.notes)


def test_warm_up_longer_than_the_data_gives_no_trades_like_the_reference(
    scenario_bars: pl.DataFrame,
) -> None:
    from tierline.engines import freqtrade

    strat = get_strategy("sma_cross")
    for slow in (80, 90):  # warm-up 81 = 80 bars + 1 still runs freqtrade; 91 cannot
        params = {"fast": 5, "slow": slow}
        res = freqtrade.run(strat, scenario_bars, params, ExecutionConfig())
        ref = reference.run(strat, scenario_bars, params, ExecutionConfig())
        assert res.trades.is_empty() and ref.trades.is_empty()
        assert res.equity["equity"].to_list() == ref.equity["equity"].to_list()
    assert any("fewer than the warm-up" in n for n in res.notes)


def test_strategy_failure_is_an_engine_error_naming_strategy_and_params(
    scenario_bars: pl.DataFrame,
) -> None:
    from tierline.engines import freqtrade

    @strategy(name="broken", params=[Int("n", 1, 9, default=3)], warmup=lambda p: 1)
    def broken(bars: pd.DataFrame, p: Mapping[str, Any]) -> pd.DataFrame:
        raise ValueError("boom")

    with pytest.raises(EngineError, match=r"'broken'.*boom.*n=4"):
        freqtrade.run(broken, scenario_bars, {"n": 4}, ExecutionConfig())


def test_engine_dispatcher_runs_freqtrade_without_an_instrument(
    scenario_bars: pl.DataFrame,
) -> None:
    from tierline.engines import run_backtest

    strat = get_strategy("sma_cross")
    res = run_backtest(
        "freqtrade", strat, scenario_bars, {"fast": 5, "slow": 20}, ExecutionConfig()
    )
    ref = reference.run(strat, scenario_bars, {"fast": 5, "slow": 20}, ExecutionConfig())
    assert res.trades["entry_ts"].to_list() == ref.trades["entry_ts"].to_list()
    assert any("no instrument given" in n for n in res.notes)


# ---------------------------------------------------------------------- units of the shim
@pytest.mark.parametrize(
    ("enter", "exit_", "want_enter", "want_exit"),
    [
        # entered at 0, exit at 2; flat at 4: both -> enter; in position at 5: both -> exit
        ("1000110", "0010110", "1000100", "0010010"),
        ("11", "11", "10", "01"),
        ("0110", "0000", "0110", "0000"),  # no conflict: unchanged
    ],
)
def test_resolve_conflicts_keeps_the_signal_that_acts(
    enter: str, exit_: str, want_enter: str, want_exit: str
) -> None:
    from tierline.engines.freqtrade import resolve_conflicts

    def arr(s: str) -> np.ndarray:
        return np.array([c == "1" for c in s])

    e, x = resolve_conflicts(arr(enter), arr(exit_))
    assert "".join("1" if v else "0" for v in e) == want_enter
    assert "".join("1" if v else "0" for v in x) == want_exit


def test_freqtrade_timeframe_names() -> None:
    from tierline.engines.freqtrade import freqtrade_timeframe

    assert [freqtrade_timeframe(s) for s in (60, 300, 3600, 14_400, 86_400, 604_800)] == [
        "1m",
        "5m",
        "1h",
        "4h",
        "1d",
        "1w",
    ]
    with pytest.raises(ConfigError, match="whole minutes"):
        freqtrade_timeframe(30)


def test_shim_settings_resolves_config_and_registry_record(tmp_path: Path) -> None:
    from tierline.engines.freqtrade import shim_settings

    s = shim_settings({"tierline": {"strategy": "sma_cross", "params": {"fast": 5}}})
    assert s.params == {"fast": 5, "slow": 50} and s.startup_candles == 50 and s.stake is None
    record = tmp_path / "rsi_reversion.json"
    record.write_text('{"strategy": "rsi_reversion", "params": {"period": 6}}')
    s = shim_settings({"tierline": {"registry": str(record), "stake": 100}})
    assert s.strategy.name == "rsi_reversion" and s.params["period"] == 6 and s.stake == 100.0
    with pytest.raises(ConfigError, match=r"no tierline\.strategy"):
        shim_settings({})
    with pytest.raises(ConfigError, match="fast < slow"):
        shim_settings({"tierline": {"strategy": "sma_cross", "params": {"fast": 50}}})


def test_generated_markets_carry_tick_lot_and_min_notional() -> None:
    from tierline.engines.freqtrade import ccxt_markets

    specs = [
        instrument_for("binance", "BTC/USDT"),
        InstrumentSpec(exchange="bittrex", symbol="ADA/BTC", price_increment="0.00000001"),
    ]
    markets = ccxt_markets(specs)
    btc, ada = markets["BTC/USDT"], markets["ADA/BTC"]
    assert btc["precision"]["price"] == 0.01 and btc["precision"]["amount"] == 1e-8
    assert btc["limits"]["cost"]["min"] == 10.0 and btc["spot"] and btc["active"]
    assert ada["quote"] == "BTC" and ada["precision"]["price"] == 1e-8
    assert ada["limits"]["cost"]["min"] == 0.0


def test_offline_markets_patch_is_removed_afterwards() -> None:
    import ccxt
    import ccxt.async_support

    from tierline.engines.freqtrade import ccxt_markets, offline_markets

    markets = ccxt_markets([instrument_for("binance", "BTC/USDT")])
    with offline_markets(markets):
        api = ccxt.binance()
        assert list(api.load_markets(reload=True)) == ["BTC/USDT"]
    assert "load_markets" not in ccxt.binance.__dict__
    assert "load_markets" not in ccxt.async_support.binance.__dict__


BOTH_ALWAYS = """
import numpy as np
import pandas as pd

from tierline.strategy.contract import Int, strategy


@strategy(name="both_always", params=[Int("k", 0, 1, default=0)], warmup=lambda p: 1)
def both_always(bars, p):
    n = len(bars)
    return pd.DataFrame(
        {"enter_long": np.ones(n, bool), "exit_long": np.ones(n, bool)}, index=bars.index
    )
"""


def _load_shim(runmode: Any, strategies: Path) -> Any:
    from freqtrade.resolvers import StrategyResolver

    return StrategyResolver.load_strategy(
        {
            "strategy": "TierlineShim",
            "strategy_path": str(USERDIR / "strategies"),
            "user_data_dir": USERDIR,
            "runmode": runmode,
            "dry_run": True,
            "stake_currency": "USDT",
            "stake_amount": "unlimited",
            "max_open_trades": 1,
            "timeframe": "5m",
            "tierline": {"strategy": "both_always", "strategies_dir": str(strategies)},
        }
    )


def test_shim_resolves_same_bar_signals_in_columns_in_backtests_and_by_custom_exit_live(
    scenario_bars: pl.DataFrame, tmp_path: Path
) -> None:
    from types import SimpleNamespace

    from freqtrade.enums import RunMode

    (tmp_path / "both_always.py").write_text(BOTH_ALWAYS)
    frame = scenario_bars.head(6).rename({"ts": "date"}).to_pandas()
    dates = list(frame["date"])

    backtest = _load_shim(RunMode.BACKTEST, tmp_path)
    assert backtest.custom_exit.__qualname__.startswith("IStrategy.")  # no per-candle copy
    out = backtest.populate_entry_trend(frame.copy(), {"pair": "BTC/USDT"})
    assert out["enter_long"].tolist() == [1, 0, 1, 0, 1, 0]
    assert out["exit_long"].tolist() == [0, 1, 0, 1, 0, 1]

    live = _load_shim(RunMode.DRY_RUN, tmp_path)
    out = live.populate_entry_trend(frame.copy(), {"pair": "BTC/USDT"})
    assert out["enter_long"].tolist() == [1] * 6 and out["exit_long"].tolist() == [0] * 6
    # during the candle after bar 3: a position opened before it exits, one opened at it stays
    now = dates[4].to_pydatetime() + timedelta(seconds=42)
    before = SimpleNamespace(open_date_utc=dates[2].to_pydatetime())
    at_fill = SimpleNamespace(open_date_utc=dates[4].to_pydatetime())
    assert live.custom_exit("BTC/USDT", before, now, 0.0, 0.0) == "exit_signal"
    assert live.custom_exit("BTC/USDT", at_fill, now, 0.0, 0.0) is None


# ---------------------------------------------------------------------- the CLI route
def test_repo_root_imports_the_installed_freqtrade() -> None:
    assert not (REPO / "freqtrade" / "__init__.py").exists()
    out = subprocess.run(
        [sys.executable, "-c", "import freqtrade; print(freqtrade.__file__)"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "site-packages" in out


def test_freqtrade_backtesting_subprocess_loads_the_shim_offline(
    market: Callable[[str], tuple[pl.DataFrame, InstrumentSpec, float]], tmp_path: Path
) -> None:
    """``freqtrade backtesting`` from the repo root: markets from 127.0.0.1, reference trades."""
    from freqtrade.data.btanalysis import load_backtest_data

    from tierline.engines import freqtrade

    bars, spec, cash = market("btc")
    bars = bars.slice(0, 3_000)
    params = {"fast": 10, "slow": 50}
    config = ExecutionConfig(initial_cash=cash)
    exe = Path(sys.executable).parent / "freqtrade"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "freqtrade"]
    (tmp_path / "results").mkdir()  # freqtrade reads a missing directory as a file prefix
    with freqtrade.serve_exchange_info([spec]) as url:
        freqtrade.export_bars(bars, spec.symbol, "5m", tmp_path / "data")
        run_conf = freqtrade.write_run_config(
            tmp_path / "config.run.json",
            strategy="sma_cross",
            params=params,
            config=config,
            pair=spec.symbol,
            timeframe="5m",
            api_url=url,
        )
        proc = subprocess.run(
            [
                *cmd,
                "backtesting",
                "--userdir",
                "freqtrade/user_data",
                "-c",
                "freqtrade/user_data/config.json",
                "-c",
                str(run_conf),
                "--datadir",
                str(tmp_path / "data"),
                "--export",
                "trades",
                "--backtest-directory",
                str(tmp_path / "results"),
                "--cache",
                "none",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "TierlineShim" in log and "127.0.0.1" in log
    results = load_backtest_data(tmp_path / "results")
    trades = freqtrade._normalise_trades(results, config.fee)
    ref = reference.run(get_strategy("sma_cross"), bars, params, config)
    assert len(ref.trades) >= 10
    assert trades["entry_ts"].to_list() == ref.trades["entry_ts"].to_list()
    assert trades["exit_ts"].to_list() == ref.trades["exit_ts"].to_list()
    parity = compare_trades(
        ref.trades,
        trades,
        engine="freqtrade-cli",
        tolerance=ParityTolerance(tick=spec.tick),
        initial_cash=cash,
    )
    assert parity.passed, parity.summary()
