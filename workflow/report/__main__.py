import sys

from workflow.report.build import main

sys.exit(main())
