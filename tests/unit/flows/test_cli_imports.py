"""The command line starts without the model stack: only the commands that run models import
torch and transformers (seconds of CPU each), so `autolabel runs`, `doctor`, `db`, `export` and
the review commands answer in the time of their own work."""

import subprocess
import sys

CHECK = (
    "import sys\n"
    "import autolabel.flows.cli.app\n"
    "from autolabel.flows.cli.status import print_runs\n"
    "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
    "print(','.join(heavy))\n"
)


def test_the_cli_and_the_run_listing_import_no_model_code() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "", f"imported with the CLI: {done.stdout.strip()}"
