"""``tierline trade``: the freqtrade command for the champion, dry run unless --live, keys
never printed; and a real ``freqtrade trade`` dry run started on the generated config
(offline: markets from 127.0.0.1) that loads the champion's parameters from the registry.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tierline.cli import main
from tierline.promotion.handoff import (
    KEY_ENV,
    SECRET_ENV,
    prepare_trade,
    trade_command,
    write_freqtrade_config,
)
from tierline.promotion.policy import load_policy

REPO = Path(__file__).resolve().parents[2]
USERDIR = REPO / "freqtrade" / "user_data"
KEY, SECRET = "k3y-Abc123-not-real", "s3cret-Xyz789-not-real"


def _record(**over: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "schema_version": 1,
        "strategy": "sma_cross",
        "params": {"fast": 15, "slow": 60},
        "exchange": "binance",
        "symbols": ["BTC/USDT"],
        "timeframe": "5m",
        "execution": {"fee": 0.001, "stake": None, "initial_cash": 10_000.0},
        "policy": {"path": "promotion/policy.toml", "sha256": "0" * 64},
        "promoted_at": "2024-03-20T00:00:00+00:00",
        "previous": None,
    }
    record.update(over)
    return record


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace with a champion in registry/ and an empty freqtrade user directory."""
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "sma_cross.json").write_text(json.dumps(_record()))
    (tmp_path / "promotion").mkdir()
    (tmp_path / "promotion" / "policy.toml").write_bytes(
        (REPO / "promotion" / "policy.toml").read_bytes()
    )
    (tmp_path / "ud").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TIERLINE_FREQTRADE_USERDIR", str(tmp_path / "ud"))
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(SECRET_ENV, raising=False)
    monkeypatch.delenv("TIERLINE_REGISTRY_DIR", raising=False)
    monkeypatch.delenv("TIERLINE_POLICY", raising=False)
    # key files go to a temporary folder of this test alone (others may write to /tmp)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return tmp_path


def _argv(out: str) -> list[str]:
    return shlex.split(out.strip().splitlines()[-1])


def test_dry_run_command_writes_the_config_and_passes_freqtrade_args(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["trade", "sma_cross", "--print-command", "--", "--logfile", "bot.log", "-v"])
    out = capsys.readouterr().out
    assert rc == 0
    config = workspace / "ud" / "config.sma_cross.json"
    assert f"wrote {config}" in out
    doc = json.loads(config.read_text())
    assert doc["dry_run"] is True and doc["tierline"]["registry"] == "../registry/sma_cross.json"
    assert doc["tierline"]["promoted_at"] == "2024-03-20T00:00:00+00:00"
    argv = _argv(out)
    assert argv[0].endswith("freqtrade") and argv[1] == "trade"
    assert argv[argv.index("--config") + 1] == str(config)
    assert argv.count("--config") == 1
    assert argv[argv.index("--strategy") + 1] == "TierlineShim"
    assert argv[argv.index("--userdir") + 1] == str(workspace / "ud")
    db = f"sqlite:///{workspace / 'ud' / 'tradesv3.sma_cross.dryrun.sqlite'}"
    assert argv[argv.index("--db-url") + 1] == db
    assert "--dry-run" in argv
    assert argv[-3:] == ["--logfile", "bot.log", "-v"]
    # A config of this promotion is kept as it is (hand edits survive) ...
    config.write_text(
        config.read_text().replace('"bot_name": "tierline-sma_cross"', '"bot_name": "x"')
    )
    assert main(["trade", "sma_cross", "--print-command", "--dry-run-wallet", "500"]) == 0
    out = capsys.readouterr().out
    assert "wrote" not in out and '"bot_name": "x"' in config.read_text()
    argv = _argv(out)
    assert argv[argv.index("--dry-run-wallet") + 1] == "500.0"
    # ... and a new promotion rewrites it.
    (workspace / "registry" / "sma_cross.json").write_text(
        json.dumps(_record(promoted_at="2024-04-01T00:00:00+00:00"))
    )
    assert main(["trade", "sma_cross", "--print-command"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert json.loads(config.read_text())["tierline"]["promoted_at"].startswith("2024-04-01")


def test_no_champion_says_to_promote_first(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["trade", "rsi_reversion", "--print-command"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "no champion for 'rsi_reversion'" in err
    assert "make promote STRATEGY=rsi_reversion" in err
    assert not (workspace / "ud" / "config.rsi_reversion.json").exists()


def test_live_without_keys_is_refused(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["trade", "sma_cross", "--live", "--print-command"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "live trading needs exchange keys" in err and KEY_ENV in err and "refusing" in err


def test_live_keys_from_env_go_to_a_private_file_and_are_never_printed(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    rc = main(["-vv", "trade", "sma_cross", "--live", "--print-command"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert KEY not in out + err and SECRET not in out + err
    argv = _argv(out)
    assert "--dry-run" not in argv
    assert argv[argv.index("--db-url") + 1].endswith("tradesv3.sma_cross.live.sqlite")
    configs = [argv[i + 1] for i, a in enumerate(argv) if a == "--config"]
    assert len(configs) == 3 and configs[0].endswith("config.sma_cross.json")
    assert not any(Path(c).exists() for c in configs[1:])  # temporaries removed

    cmd = prepare_trade("sma_cross", live=True)
    try:
        keys, mode = (Path(c) for c in cmd.argv if "tierline-" in c and c.endswith(".json"))
        assert stat.S_IMODE(keys.stat().st_mode) == 0o600
        assert json.loads(keys.read_text()) == {"exchange": {"key": KEY, "secret": SECRET}}
        assert json.loads(mode.read_text()) == {"dry_run": False}
        assert KEY_ENV not in cmd.env and SECRET_ENV not in cmd.env
        assert KEY not in cmd.printable()
    finally:
        cmd.remove_temporaries()
    assert not keys.exists() and not mode.exists()


def test_refused_live_run_leaves_no_key_file(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    rc = main(["trade", "sma_cross", "--live", "--dry-run-wallet", "5", "--print-command"])
    assert rc == 2 and "--dry-run-wallet applies to dry runs only" in capsys.readouterr().err
    assert list((workspace / "tmp").iterdir()) == []


@pytest.mark.parametrize("only", [KEY_ENV, SECRET_ENV])
def test_live_with_one_of_the_two_key_variables_is_refused(
    only: str,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # even with a private config present: a half-set environment is a mistake, not a fallback
    private = workspace / "ud" / "config.private.json"
    private.write_text(json.dumps({"exchange": {"key": "other", "secret": "other"}}))
    monkeypatch.setenv(only, KEY)
    rc = main(["trade", "sma_cross", "--live", "--print-command"])
    out, err = capsys.readouterr()
    assert rc == 2 and out.count("--config") == 0
    missing = SECRET_ENV if only == KEY_ENV else KEY_ENV
    assert f"{only} is set but {missing} is empty or unset" in err and "refusing" in err
    assert KEY not in out + err
    assert list((workspace / "tmp").iterdir()) == []


def test_live_keys_from_the_private_config(
    workspace: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    private = workspace / "ud" / "config.private.json"
    private.write_text(json.dumps({"exchange": {"key": KEY, "secret": SECRET}}))
    private.chmod(0o600)
    assert main(["trade", "sma_cross", "--live", "--print-command"]) == 0
    out, err = capsys.readouterr()
    argv = _argv(out)
    configs = [argv[i + 1] for i, a in enumerate(argv) if a == "--config"]
    assert configs[1] == str(private)
    assert "readable by others" not in caplog.text and KEY not in out + err + caplog.text
    # a key file others can read is used, with a warning saying how to fix it
    private.chmod(0o644)
    assert main(["trade", "sma_cross", "--live", "--print-command"]) == 0
    assert f"{private} holds exchange keys but is readable by others (mode 644)" in caplog.text
    assert f"chmod 600 {private}" in caplog.text and KEY not in caplog.text


def test_live_is_refused_for_a_champion_from_an_exchange_freqtrade_cannot_trade(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (workspace / "registry" / "sma_cross.json").write_text(
        json.dumps(_record(exchange="synthetic"))
    )
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    rc = main(["trade", "sma_cross", "--live", "--print-command"])
    assert rc == 2
    assert "refusing --live" in capsys.readouterr().err
    assert main(["trade", "sma_cross", "--print-command"]) == 0  # a dry run is fine
    assert list((workspace / "tmp").iterdir()) == []


def test_the_private_config_is_git_ignored_and_its_example_is_not() -> None:
    def ignored(path: str) -> bool:
        proc = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO, check=False)
        return proc.returncode == 0

    assert ignored("freqtrade/user_data/config.private.json")
    assert not ignored("freqtrade/user_data/config.private.example.json")


_BOT = """
import os, signal, sys, time
from pathlib import Path
out = Path(sys.argv[1])
def stop(signum, frame):
    out.write_text(f"stopped by signal {signum}")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
out.with_suffix(".pid").write_text(str(os.getpid()))
while True:
    time.sleep(0.05)
"""
_TIERLINE = """
import sys
from tierline.cli.trade import run_trade_command
from tierline.promotion.handoff import TradeCommand, private_key_config
keys = private_key_config()
cmd = TradeCommand(argv=[sys.executable, sys.argv[1], sys.argv[2]], env={}, cleanup=(keys,))
sys.exit(run_trade_command(cmd))
"""


def test_sigterm_to_tierline_trade_stops_the_bot_and_removes_the_key_file(
    tmp_path: Path,
) -> None:
    """A service manager stopping `tierline trade` (SIGTERM to it alone) stops the bot
    through it and the key file goes; the bot here is a stand-in process that records the
    signal it got (the freqtrade bot itself is started in the test below)."""
    (tmp_path / "tmp").mkdir()
    bot, marker = tmp_path / "bot.py", tmp_path / "bot.out"
    bot.write_text(_BOT)
    env = {**os.environ, KEY_ENV: KEY, SECRET_ENV: SECRET, "TMPDIR": str(tmp_path / "tmp")}
    proc = subprocess.Popen(
        [sys.executable, "-c", _TIERLINE, str(bot), str(marker)], env=env, cwd=tmp_path
    )
    pid_file = marker.with_suffix(".pid")
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert pid_file.exists(), "the stand-in bot did not start"
        (key_file,) = (tmp_path / "tmp").iterdir()
        assert json.loads(key_file.read_text())["exchange"]["secret"] == SECRET
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0  # the bot's exit code
    finally:
        if proc.poll() is None:
            proc.kill()
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert marker.read_text() == f"stopped by signal {int(signal.SIGTERM)}"
    assert list((tmp_path / "tmp").iterdir()) == []


# ---------------------------------------------------------------------- a real dry run
def test_freqtrade_trade_dry_run_starts_on_the_champion_config_offline(tmp_path: Path) -> None:
    """The command `tierline trade` builds really starts a freqtrade bot: the shim runs the
    champion's parameters from the registry record with the policy's protections; markets
    come from 127.0.0.1 (an overlay config, the seam `--replay` uses)."""
    from tierline.core.instruments import instrument_for
    from tierline.engines import freqtrade as ft

    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "sma_cross.json").write_text(json.dumps(_record()))
    config = write_freqtrade_config(
        _record(),
        load_policy(REPO / "promotion" / "policy.toml"),
        path=tmp_path / "config.sma_cross.json",
        registry_root=tmp_path / "registry",
    )
    spec = instrument_for("binance", "BTC/USDT")
    with ft.serve_exchange_info([spec]) as url:
        ccxt_conf = ft.offline_ccxt_config(url)
        overlay = tmp_path / "offline.json"
        overlay.write_text(
            json.dumps({"exchange": {"ccxt_config": ccxt_conf, "ccxt_async_config": ccxt_conf}})
        )
        cmd = trade_command(
            "sma_cross",
            config=config,
            userdir=USERDIR,
            overlays=[overlay],
            db_url=f"sqlite:///{tmp_path / 'trades.sqlite'}",
        )
        proc = subprocess.Popen(
            cmd.argv,
            env={**cmd.env, "NO_COLOR": "1"},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        lines: list[str] = []
        try:
            deadline = time.monotonic() + 120
            assert proc.stdout is not None
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line)
                if "to: RUNNING" in line:
                    break
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                rest, _ = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rest, _ = proc.communicate()
    log = "".join(lines) + (rest or "")
    assert "TierlineShim runs sma_cross (fast=15,slow=60), warm-up 61 candles" in log, log[-4000:]
    assert "champion record registry/sma_cross.json" in log
    assert "Dry run is enabled" in log
    assert "Using resolved protection MaxDrawdown" in log  # the policy's, via the shim
    assert "Using resolved protection StoplossGuard" in log
    assert "Changing state to: RUNNING" in log, log[-4000:]
    assert (tmp_path / "trades.sqlite").exists()
