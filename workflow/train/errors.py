"""The trainer's two ways of stopping early, each ending the job with one line, never a traceback."""

from __future__ import annotations


class TrainError(RuntimeError):
    """A run that cannot go on (bad settings for this data or launch, a failed write); the message
    names the run and says what to do."""


class StopForSignal(Exception):
    """Slurm asked the job to stop (SIGTERM or SIGUSR1), or Ctrl-C (SIGINT): checkpoint, then exit.
    Its argument is the signal's number."""
