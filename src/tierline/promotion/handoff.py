"""Hand-off to freqtrade: the config that makes ``freqtrade trade`` run the promoted champion.

`write_freqtrade_config` turns a registry record (``registry/<strategy>.json``) and the
promotion policy's ``[live]`` section into ``freqtrade/user_data/config.<strategy>.json``, a
complete freqtrade config for the shim strategy ``TierlineShim``:

- dry run by default (``dry_run: true``, ``dry_run_wallet`` from the policy); live trading is
  switched on only by ``tierline trade --live``, which layers the exchange keys on top from a
  private file; this config never holds keys;
- exchange and pair whitelist from the record (spot, ccxt symbols such as ``BTC/USDT``); a
  catalog exchange freqtrade cannot trade (``synthetic``) becomes ``binance``, and the
  config's ``tierline.exchange_note`` says so;
- ``stake_amount``, ``max_open_trades`` and ``stoploss`` from ``policy.live``; no ROI exits
  (``minimal_roi = {"0": 100}``), exits on the strategy's ``exit_long`` only;
- execution as in the backtests: tierline decides at a bar's close and fills at the next
  bar's open, paying the taker fee, so the bot sends *market* orders on the first candle after
  the signal (freqtrade requires ``price_side: "other"`` for market orders); in a dry run the
  fee is the record's ``execution.fee``;
- freqtrade protections from ``policy.live.protections`` (``MaxDrawdown``,
  ``StoplossGuard``). Freqtrade 2026.9 refuses ``protections`` in a config ("DEPRECATED:
  Setting 'protections' in the configuration is deprecated"); they are a property of the
  strategy. The config therefore carries them as ``tierline.protections`` and the shim's
  ``protections`` property returns them;
- ``tierline.registry``: the record's path *relative to the config file's folder*
  (``../../registry/sma_cross.json``); `tierline.engines.freqtrade.shim_settings` resolves a
  relative path against the folder of each config file freqtrade loaded, so the champion's
  parameters are found whatever the working directory. A user strategy (not a built-in) also
  gets ``tierline.strategies_dir``, resolved the same way.

`trade_command` builds the ``freqtrade trade`` command line for `tierline trade` (dry run,
or live with keys from the environment or the git-ignored private config).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierline.errors import ConfigError

if TYPE_CHECKING:
    from tierline.promotion.policy import LivePolicy, Policy

__all__ = [
    "CONFIG_TEMPLATE",
    "KEY_ENV",
    "PRIVATE_CONFIG",
    "SECRET_ENV",
    "TradeCommand",
    "champion_config_path",
    "freqtrade_config",
    "freqtrade_protections",
    "prepare_trade",
    "private_key_config",
    "trade_command",
    "write_freqtrade_config",
]

logger = logging.getLogger(__name__)

#: File name of a champion's config in the freqtrade user directory.
CONFIG_TEMPLATE = "config.{strategy}.json"
#: Git-ignored file in the user directory holding exchange keys for live trading.
PRIVATE_CONFIG = "config.private.json"
#: Environment variables holding the exchange key and secret for live trading.
KEY_ENV = "TIERLINE_EXCHANGE_KEY"
SECRET_ENV = "TIERLINE_EXCHANGE_SECRET"  # noqa: S105 - a variable name, not a secret
#: No ROI exits: 10,000 % is never reached.
_NO_ROI = {"0": 100}
#: Market orders everywhere: the conventions fill at the first price after the decision,
#: paying the taker fee.
_ORDER_TYPES = {
    "entry": "market",
    "exit": "market",
    "emergency_exit": "market",
    "force_entry": "market",
    "force_exit": "market",
    "stoploss": "market",
    "stoploss_on_exchange": False,
}


# ---------------------------------------------------------------------- the config
def champion_config_path(strategy: str, userdir: Path | None = None) -> Path:
    """Return ``<userdir>/config.<strategy>.json`` (default user dir ``freqtrade/user_data``)."""
    from tierline.engines.freqtrade import userdir as default_userdir

    return (userdir or default_userdir()) / CONFIG_TEMPLATE.format(strategy=strategy)


def freqtrade_protections(live: LivePolicy) -> list[dict[str, Any]]:
    """Return freqtrade protection entries for the policy's ``[live.protections.*]`` sections.

    Parameters
    ----------
    live
        ``policy.live``: its ``protections.max_drawdown`` becomes a ``MaxDrawdown`` entry and
        ``protections.stoploss_guard`` a ``StoplossGuard`` entry (each may be absent/None).

    Returns
    -------
    list of dict
        In freqtrade's protection format (``method``, ``lookback_period_candles``,
        ``trade_limit``, ``stop_duration_candles`` and the method's own keys).
    """
    prot = getattr(live, "protections", None)
    out: list[dict[str, Any]] = []
    if prot is None:
        return out
    dd = getattr(prot, "max_drawdown", None)
    if dd is not None:
        out.append(
            {
                "method": "MaxDrawdown",
                "lookback_period_candles": int(dd.lookback_period_candles),
                "trade_limit": int(dd.trade_limit),
                "stop_duration_candles": int(dd.stop_duration_candles),
                "max_allowed_drawdown": float(dd.max_allowed_drawdown),
            }
        )
    guard = getattr(prot, "stoploss_guard", None)
    if guard is not None:
        out.append(
            {
                "method": "StoplossGuard",
                "lookback_period_candles": int(guard.lookback_period_candles),
                "trade_limit": int(guard.trade_limit),
                "stop_duration_candles": int(guard.stop_duration_candles),
                "only_per_pair": bool(guard.only_per_pair),
            }
        )
    return out


def _record_field(record: Mapping[str, Any], key: str, where: str) -> Any:
    value = record.get(key)
    if value in (None, "", [], {}):
        raise ConfigError(f"registry record {where}: field {key!r} is missing or empty")
    return value


def _stake(live: LivePolicy, where: str) -> tuple[str | float, float | None]:
    raw = getattr(live, "stake_amount", "unlimited")
    if raw == "unlimited":
        return "unlimited", None
    try:
        stake = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(
            f'{where}: live.stake_amount {raw!r} must be "unlimited" or a number'
        ) from None
    if not stake > 0:
        raise ConfigError(f"{where}: live.stake_amount {raw!r} must be > 0")
    return stake, stake


def _freqtrade_exchange(name: str) -> tuple[str, str | None]:
    """Return the exchange freqtrade trades and a note when it is not the record's."""
    import ccxt

    if name in ccxt.exchanges:
        return name, None
    from tierline.engines.freqtrade import FT_EXCHANGE

    return FT_EXCHANGE, (
        f"the champion was promoted on catalog exchange {name!r}, which freqtrade cannot trade; "
        f"this config trades {FT_EXCHANGE!r} (edit exchange.name to choose another)"
    )


def _relative(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


def freqtrade_config(
    record: Mapping[str, Any],
    policy: Policy,
    *,
    config_dir: Path,
    registry_root: Path | None = None,
) -> dict[str, Any]:
    """Return the freqtrade config of a champion (see the module docstring).

    Parameters
    ----------
    record
        The registry record (``strategy``, ``params``, ``exchange``, ``symbols``,
        ``timeframe``, ``execution``, ...).
    policy
        The promotion policy; its ``live`` section sets stake, open trades, stop-loss, dry-run
        wallet and protections.
    config_dir
        Folder the config will be written to (``tierline.registry`` is relative to it).
    registry_root
        Folder of the registry record (default ``$TIERLINE_REGISTRY_DIR`` or ``registry``).

    Returns
    -------
    dict
        The config, JSON-serialisable; no keys or secrets.

    Raises
    ------
    ConfigError
        If the record lacks a field, names a perpetual or pairs of different quote
        currencies, or the policy's live section is invalid.
    """
    strategy = str(_record_field(record, "strategy", "(no strategy)"))
    where = f"for {strategy!r}"
    symbols = [str(s) for s in _record_field(record, "symbols", where)]
    timeframe = str(_record_field(record, "timeframe", where))
    catalog_exchange = str(_record_field(record, "exchange", where))
    if any(":" in s for s in symbols):
        raise ConfigError(
            f"registry record {where}: {', '.join(symbols)}: the freqtrade hand-off trades spot "
            "pairs only (no perpetuals)"
        )
    quotes = {s.split("/")[-1] for s in symbols}
    if len(quotes) != 1 or any("/" not in s for s in symbols):
        raise ConfigError(
            f"registry record {where}: symbols {symbols} must be BASE/QUOTE pairs of one quote "
            "currency (freqtrade has one stake currency)"
        )
    live = getattr(policy, "live", None)
    if live is None:
        raise ConfigError("the promotion policy has no [live] section")
    stake_amount, fixed_stake = _stake(live, "promotion policy")
    max_open = int(getattr(live, "max_open_trades", 1))
    if max_open < 1:
        raise ConfigError(f"promotion policy: live.max_open_trades {max_open} must be >= 1")
    stoploss = getattr(live, "stoploss", None)
    if stoploss is not None and not -1.0 <= float(stoploss) < 0.0:
        raise ConfigError(f"promotion policy: live.stoploss {stoploss!r} must be in [-1, 0)")
    wallet = float(getattr(live, "dry_run_wallet", 0) or 0)
    if not wallet > 0:
        raise ConfigError(f"promotion policy: live.dry_run_wallet {wallet!r} must be > 0")
    execution = record.get("execution") or {}
    fee = execution.get("fee")
    exchange, exchange_note = _freqtrade_exchange(catalog_exchange)

    from tierline.promotion.registry import record_path

    registry_file = record_path(strategy, registry_root)
    section: dict[str, Any] = {
        "registry": _relative(registry_file, config_dir),
        "stake": fixed_stake,
        "protections": freqtrade_protections(live),
    }
    from tierline.strategy.registry import BUILTIN_MODULES, strategies_dir

    folder = strategies_dir()
    if strategy not in BUILTIN_MODULES and folder.is_dir():
        section["strategies_dir"] = _relative(folder, config_dir)
    if exchange_note:
        section["exchange_note"] = exchange_note
    policy_ref = record.get("policy") or {}
    if policy_ref.get("sha256"):
        section["policy_sha256"] = policy_ref["sha256"]
    if record.get("promoted_at"):
        section["promoted_at"] = record["promoted_at"]

    from tierline.engines.freqtrade import SHIM_STRATEGY

    config: dict[str, Any] = {
        "bot_name": f"tierline-{strategy}",
        "strategy": SHIM_STRATEGY,
        "tierline": section,
        "max_open_trades": max_open,
        "stake_currency": quotes.pop(),
        "stake_amount": stake_amount,
        "tradable_balance_ratio": 0.99,
        "amend_last_stake_amount": False,
        "dry_run": True,
        "dry_run_wallet": wallet,
        "cancel_open_orders_on_exit": False,
        "timeframe": timeframe,
        "trading_mode": "spot",
        "margin_mode": "",
        "minimal_roi": dict(_NO_ROI),
        "stoploss": float(stoploss) if stoploss is not None else -1.0,
        "trailing_stop": False,
        "use_exit_signal": True,
        "exit_profit_only": False,
        "ignore_roi_if_entry_signal": False,
        "position_adjustment_enable": False,
        "order_types": dict(_ORDER_TYPES),
        "order_time_in_force": {"entry": "GTC", "exit": "GTC"},
        "entry_pricing": {
            "price_side": "other",
            "use_order_book": True,
            "order_book_top": 1,
            "price_last_balance": 0.0,
            "check_depth_of_market": {"enabled": False, "bids_to_ask_delta": 1},
        },
        "exit_pricing": {"price_side": "other", "use_order_book": True, "order_book_top": 1},
        "unfilledtimeout": {"entry": 10, "exit": 10, "exit_timeout_count": 0, "unit": "minutes"},
        "exchange": {
            "name": exchange,
            "key": "",
            "secret": "",
            "ccxt_config": {},
            "ccxt_async_config": {},
            "pair_whitelist": symbols,
            "pair_blacklist": [],
        },
        "pairlists": [{"method": "StaticPairList"}],
        "initial_state": "running",
        "force_entry_enable": False,
        "internals": {"process_throttle_secs": 5},
        "dataformat_ohlcv": "feather",
        "dataformat_trades": "feather",
    }
    if fee is not None:
        config["fee"] = float(fee)  # freqtrade applies it in dry runs only
    return config


def write_freqtrade_config(
    record: Mapping[str, Any],
    policy: Policy,
    *,
    path: Path | None = None,
    registry_root: Path | None = None,
) -> Path:
    """Write the champion's freqtrade config atomically; return its path.

    Parameters
    ----------
    record
        The registry record of the champion (see `freqtrade_config`).
    policy
        The promotion policy (`tierline.promotion.policy.Policy`); ``policy.live`` is read.
    path
        Where to write (default ``freqtrade/user_data/config.<strategy>.json``).
    registry_root
        Folder of the registry record (default ``$TIERLINE_REGISTRY_DIR`` or ``registry``);
        the config points at
        ``<registry_root>/<strategy>.json``, relative to the config's folder.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ConfigError
        If the record or the policy cannot make a valid config; nothing is written then.
    """
    from tierline.data.atomic import write_text_atomic

    strategy = str(_record_field(record, "strategy", "(no strategy)"))
    target = Path(path) if path is not None else champion_config_path(strategy)
    config = freqtrade_config(record, policy, config_dir=target.parent, registry_root=registry_root)
    write_text_atomic(target, json.dumps(config, indent=2) + "\n")
    logger.info("freqtrade config for %s written to %s", strategy, target)
    return target


# ---------------------------------------------------------------------- the command
@dataclass(frozen=True, kw_only=True)
class TradeCommand:
    """A ``freqtrade trade`` invocation built by `trade_command`.

    Attributes
    ----------
    argv
        The command line (no secrets in it: keys travel in a private file).
    env
        Environment for the child process (this one's, without the tierline key variables).
    cleanup
        Temporary files to delete when freqtrade exits (the private key file of a live run).
    live
        Whether it trades live.
    """

    argv: list[str]
    env: dict[str, str]
    cleanup: tuple[Path, ...] = field(default=())
    live: bool = False

    def printable(self) -> str:
        """Return the command line as text, secret-looking values redacted."""
        import shlex

        from tierline.tracking import redact_argv

        return shlex.join(redact_argv(self.argv))

    def remove_temporaries(self) -> None:
        """Delete the temporary files (the private key file)."""
        for tmp in self.cleanup:
            tmp.unlink(missing_ok=True)


def private_key_config(directory: Path | None = None) -> Path | None:
    """Write ``TIERLINE_EXCHANGE_KEY``/``_SECRET`` into a private temporary config (mode 0600).

    Parameters
    ----------
    directory
        Where to create the file (default: the system's temporary folder).

    Returns
    -------
    pathlib.Path or None
        The file (``{"exchange": {"key": ..., "secret": ...}}``), or None when neither
        variable is set.

    Raises
    ------
    ConfigError
        If only one of the two variables is set (rather than silently falling back to
        another source of keys).
    """
    key, secret = os.environ.get(KEY_ENV), os.environ.get(SECRET_ENV)
    if not key and not secret:
        return None
    if not key or not secret:
        have, missing = (KEY_ENV, SECRET_ENV) if key else (SECRET_ENV, KEY_ENV)
        raise ConfigError(
            f"live trading: {have} is set but {missing} is empty or unset; set both (or "
            "neither, to use the private config file); refusing to start"
        )
    fd, name = tempfile.mkstemp(prefix="tierline-keys-", suffix=".json", dir=directory)
    try:
        os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w") as fh:
            json.dump({"exchange": {"key": key, "secret": secret}}, fh)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def _freqtrade_exe() -> str:
    exe = Path(sys.executable).with_name("freqtrade")
    return str(exe) if exe.exists() else "freqtrade"


def trade_command(
    strategy: str,
    *,
    config: Path,
    live: bool = False,
    userdir: Path | None = None,
    overlays: Sequence[Path] = (),
    dry_run_wallet: float | None = None,
    db_url: str | None = None,
    extra_args: Sequence[str] = (),
) -> TradeCommand:
    """Build ``freqtrade trade --config <config> ... --strategy TierlineShim --userdir ...``.

    Parameters
    ----------
    strategy
        The champion's name (for the trades database name).
    config
        The champion's freqtrade config (`write_freqtrade_config`).
    live
        Trade with real money: the exchange keys come from ``$TIERLINE_EXCHANGE_KEY`` and
        ``$TIERLINE_EXCHANGE_SECRET`` (written to a 0600 temporary config, deleted after the
        run) or else from ``<userdir>/config.private.json``, and ``dry_run`` is switched off.
        Otherwise freqtrade's ``--dry-run`` is passed and no key file is read.
    userdir
        Freqtrade user directory (default ``freqtrade/user_data``).
    overlays
        More config files layered after the champion's (e.g. an exchange endpoint).
    dry_run_wallet
        Starting balance of a dry run (default: the config's).
    db_url
        Trades database (default ``sqlite:///<userdir>/tradesv3.<strategy>.<dryrun|live>.sqlite``).
    extra_args
        More ``freqtrade trade`` arguments, appended as given.

    Returns
    -------
    TradeCommand

    Raises
    ------
    ConfigError
        If ``live`` and no keys are available (or only one of the two key variables is
        set), or the config is missing.
    """
    from tierline.engines.freqtrade import SHIM_STRATEGY
    from tierline.engines.freqtrade import userdir as default_userdir

    udir = userdir or default_userdir()
    if not Path(config).is_file():
        raise ConfigError(f"freqtrade config {config} does not exist")
    if live and dry_run_wallet is not None:
        raise ConfigError("--dry-run-wallet applies to dry runs only (not with --live)")
    configs = [Path(config), *(Path(p) for p in overlays)]
    cleanup: list[Path] = []
    try:
        if live:
            configs += _live_configs(udir, cleanup)
        mode = "live" if live else "dryrun"
        db = db_url or f"sqlite:///{(udir / f'tradesv3.{strategy}.{mode}.sqlite').resolve()}"
        argv = [_freqtrade_exe(), "trade"]
        for c in configs:
            argv += ["--config", str(c)]
        argv += ["--strategy", SHIM_STRATEGY, "--userdir", str(udir), "--db-url", db]
        if not live:
            argv.append("--dry-run")
        if dry_run_wallet is not None:
            argv += ["--dry-run-wallet", repr(float(dry_run_wallet))]
        argv += list(extra_args)
    except BaseException:
        for tmp in cleanup:
            tmp.unlink(missing_ok=True)
        raise
    env = {k: v for k, v in os.environ.items() if k not in (KEY_ENV, SECRET_ENV)}
    return TradeCommand(argv=argv, env=env, cleanup=tuple(cleanup), live=live)


def _live_configs(udir: Path, cleanup: list[Path]) -> list[Path]:
    """Return the key config and a ``dry_run: false`` config; temporaries go to ``cleanup``."""
    keys = private_key_config()
    out: list[Path] = []
    if keys is not None:
        cleanup.append(keys)
        out.append(keys)
    elif (udir / PRIVATE_CONFIG).is_file():
        private = udir / PRIVATE_CONFIG
        mode = stat.S_IMODE(private.stat().st_mode)
        if mode & 0o077:
            logger.warning(
                "%s holds exchange keys but is readable by others (mode %o): chmod 600 %s",
                private,
                mode,
                private,
            )
        out.append(private)
    else:
        raise ConfigError(
            f"live trading needs exchange keys: set {KEY_ENV} and {SECRET_ENV}, or write "
            f"them to {udir / PRIVATE_CONFIG} (git-ignored; see "
            f"{udir / 'config.private.example.json'}); refusing to start"
        )
    # The champion's config says dry_run true; a live run switches it off explicitly.
    fd, name = tempfile.mkstemp(prefix="tierline-live-", suffix=".json")
    cleanup.append(Path(name))
    with os.fdopen(fd, "w") as fh:
        json.dump({"dry_run": False}, fh)
    out.append(Path(name))
    return out


def _read_champion(strategy: str, registry_root: Path) -> dict[str, Any]:
    from tierline.promotion.registry import read_record

    record = read_record(strategy, root=registry_root)
    if record is None:
        raise ConfigError(
            f"no champion for {strategy!r} in {registry_root}/ (no {strategy}.json): promote one "
            f"first: run make promote STRATEGY={strategy}"
        )
    return record


def prepare_trade(
    strategy: str,
    *,
    live: bool = False,
    config: Path | None = None,
    registry_root: Path | None = None,
    policy_path: Path | None = None,
    userdir: Path | None = None,
    overlays: Sequence[Path] = (),
    dry_run_wallet: float | None = None,
    extra_args: Sequence[str] = (),
) -> TradeCommand:
    """Return the ``freqtrade trade`` command that runs the champion of ``strategy``.

    The champion must exist in the registry. Its config is ``config`` when given (used as
    is), else ``<userdir>/config.<strategy>.json``, (re)written from the record and the policy
    when missing or when it belongs to another promotion (its ``tierline.promoted_at``
    differs from the record's).

    Parameters
    ----------
    strategy
        Strategy name.
    live
        Trade with real money (see `trade_command`); refused for a champion promoted on an
        exchange freqtrade cannot trade (the config's ``tierline.exchange_note``).
    config
        A freqtrade config to use instead of the generated one.
    registry_root
        Registry folder (default ``$TIERLINE_REGISTRY_DIR`` or ``registry``).
    policy_path
        Promotion policy for a (re)generated config (default: `load_policy`'s).
    userdir
        Freqtrade user directory (default ``freqtrade/user_data``).
    overlays, dry_run_wallet, extra_args
        As in `trade_command`.

    Returns
    -------
    TradeCommand

    Raises
    ------
    ConfigError
        If there is no champion, the config is missing or invalid, or live trading is refused.
    """
    from tierline.engines.freqtrade import userdir as default_userdir
    from tierline.promotion.registry import registry_root as resolve_root

    udir = userdir or default_userdir()
    root = resolve_root(registry_root)
    record = _read_champion(strategy, root)
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"--config {path}: no such file")
    else:
        path = champion_config_path(strategy, udir)
        if _stale(path, record):
            from tierline.promotion.policy import load_policy

            policy = load_policy(policy_path)
            promoted_under = (record.get("policy") or {}).get("sha256")
            if promoted_under and promoted_under != policy.sha256:
                logger.warning(
                    "%s was promoted under another policy than %s (sha256 %s...): the live "
                    "limits come from the current file",
                    strategy,
                    policy.path,
                    policy.sha256[:12],
                )
            write_freqtrade_config(record, policy, path=path, registry_root=root)
            print(f"wrote {path} from {root / (strategy + '.json')} and {policy.path}", flush=True)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"freqtrade config {path}: cannot be read ({e})") from e
    note = (doc.get("tierline") or {}).get("exchange_note")
    if live and note:
        raise ConfigError(f"refusing --live: {note}")
    return trade_command(
        strategy,
        config=path,
        live=live,
        userdir=udir,
        overlays=overlays,
        dry_run_wallet=dry_run_wallet,
        extra_args=extra_args,
    )


def _stale(path: Path, record: Mapping[str, Any]) -> bool:
    if not path.is_file():
        return True
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return True
    return bool((doc.get("tierline") or {}).get("promoted_at") != record.get("promoted_at"))
