import sys

from workflow.files import run_stage
from workflow.tune.select import main

sys.exit(run_stage(main, "tune"))
