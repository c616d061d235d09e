import sys

from workflow.io import run_stage
from workflow.report.build import main

sys.exit(run_stage(main, "report"))
