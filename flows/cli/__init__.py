"""The `autolabel` command line.

Every subcommand has `--help`. Expected failures (bad configuration, unreachable services, bad
input) end with a one-line `autolabel: error: ...` message and exit code 2, never a traceback.
"""

import os
import sys

EXIT_ERROR = 2

# Prefect reads these when it is first imported; the CLI imports it after setting them.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI, turning expected errors into one-line messages."""
    for name, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    from autolabel.flows.cli.app import EXPECTED_ERRORS, app

    try:
        app(args=argv, prog_name="autolabel", standalone_mode=True)
    except EXPECTED_ERRORS as exc:
        sys.stderr.write(f"autolabel: error: {exc}\n")
        sys.exit(EXIT_ERROR)
