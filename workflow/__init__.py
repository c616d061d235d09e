"""Logic of the scaling-law pipeline: one module per stage, each with a CLI.

The Snakemake rules under ``rules/`` only wire files to these modules
(``python -m workflow.<stage> ...``); everything here imports and tests
without Snakemake.
"""

__version__ = "0.1.0"
