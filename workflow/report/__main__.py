import sys

from workflow.files import run_stage
from workflow.report.build import main

sys.exit(run_stage(main, "report"))
