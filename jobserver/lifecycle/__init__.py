"""THE place where jobs change state (one module per concern, one door).

Every public function here is one transaction: push, claim, update_job
(the classic report), advance / fail / release / cancel / heartbeat (the
API's worker side), sweep (flag, requeue, fail, lose silent workers),
requeue_flagged, and the boards' settings, lifetimes and tokens.  Views,
the CLI and the sweeper call these; nothing else writes job state.  After a commit the board is marked dirty so that the live
emitter pushes one coalesced update.

History: every claim is an ``attempts`` row (who, from when, until when,
how it ended), so claims and the reports that end them need no event row;
the ``events`` table holds the rest (pushed, advanced without a claim,
flagged, requeued, failed).

The hot statements are built once at import with bind parameters, so a
claim costs SQLAlchemy no statement construction or cache-key work.
"""
from __future__ import annotations

from .attempts import Advance, advance, cancel, fail, heartbeat, release
from .boards import (board_by_name, board_for_token, board_settings, classic_board_name,
                     create_board, delete_board, ensure_board, find_board, issue_token,
                     lifetimes, list_tokens, rename_guessable_boards,
                     revoke_token, set_board_options, set_lifetime, set_lifetimes_if_unset,
                     set_stage_name)
from .common import (BOARDS, BoardRef, ClaimedJob, Conflict, LifecycleError, NewJob, NotFound,
                     SweepResult, UnknownStage)
from .jobs import claim, push, update_job
from .sweep import requeue_flagged, sweep

__all__ = [
    "BOARDS", "Advance", "BoardRef", "ClaimedJob", "Conflict", "LifecycleError", "NewJob",
    "NotFound", "SweepResult", "UnknownStage", "advance", "board_by_name", "board_for_token",
    "board_settings", "cancel", "claim", "classic_board_name", "create_board", "delete_board",
    "ensure_board", "fail", "find_board", "heartbeat", "issue_token", "lifetimes", "list_tokens",
    "push", "release", "rename_guessable_boards", "requeue_flagged", "revoke_token", "set_board_options", "set_lifetime",
    "set_lifetimes_if_unset", "set_stage_name", "sweep", "update_job",
]
