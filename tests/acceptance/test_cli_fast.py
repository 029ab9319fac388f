"""`tierline --help` stays fast: building the parser imports no engine or heavy library."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "polars",
    "pandas",
    "numpy",
    "vectorbt",
    "nautilus_trader",
    "freqtrade",
    "hftbacktest",
    "mlflow",
    "ccxt",
    "optuna",
    "numba",
    "pyarrow",
)


def test_help_imports_no_heavy_module() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from tierline.cli import main\n"
        "for argv in (['--help'], ['data', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main(argv)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
