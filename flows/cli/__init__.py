"""The `autolabel` command line.

Every subcommand has `--help`. Expected failures (bad configuration, unreachable services, bad
input) end with a one-line `autolabel: error: ...` message and exit code 2, never a traceback:
tracebacks go to the command's log file (`<AUTOLABEL_HOME>/logs/`), and to the terminal with
`--debug` (see `autolabel.flows.cli.boundary`).
"""

import os
import sys

# Prefect reads these when it is first imported; the CLI imports it after setting them.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}
DEBUG_FLAG = "--debug"


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI inside the one error boundary."""
    for name, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args
    args = [arg for arg in args if arg != DEBUG_FLAG]
    from autolabel.flows.cli.logs import command_logging, new_command_log
    from autolabel.flows.prefect_api import discard_early, start_early

    log = new_command_log()
    start_early(args, log.api_path)  # its start overlaps the imports below
    try:
        import prefect.main  # noqa: F401 - its logging setup must come before command_logging

        from autolabel.flows.cli.app import app
        from autolabel.flows.cli.boundary import describe, record

        with command_logging(log, debug=debug):
            try:
                app(args=args, prog_name="autolabel", standalone_mode=True)
            except SystemExit:
                raise
            except BaseException as exc:  # noqa: BLE001 - the boundary: every failure ends here
                line, code = describe(exc, log)
                record(exc, line)
                sys.stderr.write(line + "\n")
                sys.exit(code)
    finally:
        discard_early()
