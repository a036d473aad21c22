"""`jobworker pool`: workers started in batch allocations as the board needs
them.  One policy (:mod:`.policy`: how many allocations for the work
waiting, when to cancel, when to stop after refusals) drives two back-ends
behind one interface (:class:`.allocation.Scheduler`): :mod:`.slurm`
(sbatch, squeue, scontrol, scancel) and :mod:`.local` (processes on this
machine).  :mod:`.pool` is the loop that reads the board, asks the
scheduler, reports each allocation's state to the server and applies the
policy.
"""
from __future__ import annotations

from .allocation import Allocation, AllocationSpec, Refused, Scheduler, State, parse_time
from .policy import Decision, Limits, Refusals, Work, decide

__all__ = ["Allocation", "AllocationSpec", "Decision", "Limits", "Refusals", "Refused",
           "Scheduler", "State", "Work", "decide", "parse_time"]
