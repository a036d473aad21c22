"""THE place where jobs change state (one module per concern, one door).

Every public function here is one transaction: push, claim, update_job
(the classic report), advance / fail / release / cancel / heartbeat (the
API's worker side), sweep (flag, requeue, fail, lose silent workers),
requeue_flagged, retry / set_priority (a person's hands), the boards'
settings, lifetimes and tokens, report_allocation (pools), and accounts
(users, keys, members).
Dependencies between jobs (deps) are checked at push and released inside
the report that finishes a job.  Views, the CLI and the sweeper call these;
nothing else writes job state.  After a commit the board is marked dirty so
that the live emitter pushes one coalesced update.

History: every claim is an ``attempts`` row (who, from when, until when,
how it ended), and every change writes its jobs' and workers' events in the
same transaction: the one event log that followers read after a cursor
(events.py: the cursor, its reads and the retention).

The hot statements are built once at import with bind parameters, so a
claim costs SQLAlchemy no statement construction or cache-key work.
"""
from __future__ import annotations

from .attempts import Advance, advance, cancel, fail, heartbeat, release
from .accounts import (UserRef, check_login, create_user, issue_key, list_keys,
                       list_members, list_users, member_boards, member_role, remove_member,
                       revoke_key, session_user, set_member, set_password, user_by_name,
                       user_for_key)
from .boards import (board_by_name, board_settings, classic_board_name,
                     create_board, delete_board, ensure_board, find_board,
                     lifetimes, rename_guessable_boards,
                     set_board_options, set_lifetime, set_lifetimes_if_unset,
                     set_stage_name)
from .boards import UNCHANGED
from .common import (BOARDS, BoardRef, ClaimedJob, Conflict, LifecycleError, NewJob, NotFound,
                     SweepResult, UnknownStage)
from .deps import Extras
from .jobs import PushResult, claim, push, push_jobs, update_job
from .pools import report_allocation
from .retry import retry, set_priority
from .sweep import requeue_flagged, sweep
from .tokens import (BoardGrant, board_for_token, grant_for_token, issue_token, list_tokens,
                     revoke_token, token_id_of)

__all__ = [
    "Advance", "BOARDS", "BoardRef", "ClaimedJob", "Conflict", "Extras", "LifecycleError",
    "NewJob", "NotFound", "PushResult", "SweepResult", "UNCHANGED", "UnknownStage", "advance",
    "board_by_name", "board_for_token", "board_settings", "cancel", "claim",
    "classic_board_name", "create_board", "delete_board", "ensure_board", "fail", "find_board",
    "heartbeat", "issue_token", "lifetimes", "list_tokens", "push", "push_jobs", "release",
    "rename_guessable_boards", "report_allocation", "requeue_flagged", "retry", "revoke_token",
    "set_board_options", "set_lifetime", "set_lifetimes_if_unset", "set_priority",
    "set_stage_name", "sweep", "update_job",
    # accounts and tokens
    "BoardGrant", "UserRef", "check_login", "create_user", "grant_for_token", "issue_key",
    "list_keys", "list_members", "list_users", "member_boards", "member_role", "remove_member",
    "revoke_key", "session_user", "set_member", "set_password", "token_id_of", "user_by_name",
    "user_for_key",
]
