"""Train stage: one run of the grid, from its settings to metrics, weights and a summary.

``python -m workflow.train`` (``__main__.py``) is the CLI; the run itself is
``workflow.train.trainer``. The parts it composes each have a module:

``trainer``     setup, the loop over steps, the points of a WSD run, the outputs;
``checkpoint``  the ``Checkpointer``: save, latest, load, set aside (``.pt`` and DCP);
``parallel``    device, process group, DDP and FSDP wrapping;
``kernels``     apex or torch for each component, the optimizer, the GPU's peak FLOP/s;
``schedule``    learning-rate multipliers;
``record``      progress, metrics rows, versions;
``prefetch``    the next step's batch, ready while the device works;
``errors``      the trainer's one-line errors.

Nothing is imported here, so that importing a part (``workflow.evaluate`` takes
``parallel.resolve_device``) does not load the trainer.
"""
