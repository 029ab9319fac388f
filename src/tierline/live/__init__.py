"""Live trading offline: a local exchange replay, freqtrade dry-runs against it, shadow parity.

- `tierline.live.replay`: `ReplayServer`, Binance's public spot REST API answered from the
  Parquet catalog, re-stamped so that the replayed history is "now" (``tierline replay serve``).
- `tierline.live.dryrun`: real ``freqtrade trade`` in dry-run against a replay server, its
  trade database read back (``tierline trade --replay``).
- `tierline.live.shadow`: a dry-run over a span of replayed candles, the backtest of the same
  candles, and their trade-by-trade parity (``tierline shadow``).

Nothing here is imported by ``tierline --help``; each module imports its engine lazily.
"""
