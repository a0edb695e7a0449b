"""The call service: one database transaction per webhook, the pure engine in the middle.

For every provider request the service loads the call and its session in one statement
(row-locked on PostgreSQL; SQLite serialises writers with ``BEGIN IMMEDIATE``), checks whether
this request was already answered (a step number behind the session means a replay), runs the
engine, runs any service action the flow asks for, then writes the new state, the step's
response, the call events and any SMS intents (outbox rows), and commits. A replayed request
gets the stored answer again and never advances the call twice.

The webhook path uses SQLAlchemy Core with a handful of statements per request: it is the
hottest path in the product (see ``bench/webhook.py``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import Connection, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from ..clock import Clock
from ..db.engine import Database, pipelined, retry_once
from ..db.models import (
    Call,
    CallEvent,
    CallSession,
    CallStep,
    OutboxMessage,
    ProviderStatus,
    Resident,
)
from ..db.sql import insert_ignore, inserted
from ..ivr import instructions as ins
from ..ivr.engine import (
    SEALED,
    ActionRequest,
    ActionResult,
    Digits,
    Engine,
    NoInput,
    SessionState,
    Speech,
    Start,
    Step,
    Trace,
)
from ..ivr.model import ActionNode
from ..logs import mask_text
from ..phone import mask, normalize_caller_id
from ..routing.priority import age_on, birth_date_from_id
from .actions import ActionContext, ActionRegistry

#: How a sealed value is stored: ``{"$sealed": token}``.
SEALED_TOKEN = "$sealed"  # noqa: S105 - a marker key, not a secret

log = logging.getLogger(__name__)

#: Provider call statuses after which a call is over.
TERMINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
MAX_ACTIONS_PER_STEP = 8
CallerInput = Digits | Speech | NoInput

calls_t = cast(Table, Call.__table__)
sessions_t = cast(Table, CallSession.__table__)
steps_t = cast(Table, CallStep.__table__)
events_t = cast(Table, CallEvent.__table__)
residents_t = cast(Table, Resident.__table__)
outbox_t = cast(Table, OutboxMessage.__table__)
status_t = cast(Table, ProviderStatus.__table__)


@dataclass(frozen=True)
class Reply:
    """What to tell the provider: instructions, and the step number the next input must carry."""

    provider_call_id: str
    step: int
    instructions: tuple[ins.Instruction, ...]
    ended: bool
    replayed: bool = False
    language: str = "zh-CN"


@dataclass(frozen=True)
class TranscriptLine:
    """One line of a call's history, for the simulator and the console."""

    step: int | None
    kind: str
    node: str | None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class _CallRow:
    """The columns of a call the webhook path reads and may change."""

    id: int
    provider_call_id: str
    from_e164: str | None
    resident_id: int | None
    language: str
    outcome: str | None
    queue: str | None
    priority: int
    red_flag: bool

    @classmethod
    def of(cls, row: Any) -> _CallRow:
        return cls(
            row.id,
            row.provider_call_id,
            row.from_e164,
            row.resident_id,
            row.language,
            row.outcome,
            row.queue,
            row.priority,
            row.red_flag,
        )

    def changes(self, before: _CallRow) -> dict[str, Any]:
        names = ("language", "outcome", "queue", "priority", "red_flag")
        return {n: getattr(self, n) for n in names if getattr(self, n) != getattr(before, n)}


_CALL_COLUMNS = (
    calls_t.c.id,
    calls_t.c.provider_call_id,
    calls_t.c.from_e164,
    calls_t.c.resident_id,
    calls_t.c.language,
    calls_t.c.outcome,
    calls_t.c.queue,
    calls_t.c.priority,
    calls_t.c.red_flag,
)


# Statements on the webhook path are built once: building a SQLAlchemy statement costs more
# than running it on SQLite.
_KEY = (calls_t.c.provider == bindparam("provider")) & (
    calls_t.c.provider_call_id == bindparam("provider_call_id")
)
_SELECT_LIVE_CALL = (
    select(*_CALL_COLUMNS, sessions_t.c.state, sessions_t.c.step)
    .join(sessions_t, sessions_t.c.call_id == calls_t.c.id)
    .where(_KEY)
    .with_for_update()
)
_SELECT_CALL_ID = select(calls_t.c.id, calls_t.c.provider_call_id).where(_KEY).with_for_update()
_SELECT_CALL_END = (
    select(calls_t.c.id, calls_t.c.outcome, calls_t.c.ended_at, calls_t.c.queue)
    .where(_KEY)
    .with_for_update()
)
# A status callback reads the call and its session at once (the call row locked: every writer
# of a session locks its call first).
_SELECT_CALL_STATUS = (
    select(
        calls_t.c.id,
        calls_t.c.outcome,
        calls_t.c.ended_at,
        sessions_t.c.state.label("session_state"),
    )
    .outerjoin(sessions_t, sessions_t.c.call_id == calls_t.c.id)
    .where(_KEY)
    .with_for_update(of=calls_t)
)
_END_CALL = (
    update(calls_t)
    .where(calls_t.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        ended_at=bindparam("b_at"),
        duration_s=bindparam("b_duration_s"),
        outcome=bindparam("b_outcome"),
    )
)
_END_SESSION = (
    update(sessions_t)
    .where(sessions_t.c.call_id == bindparam("b_call_id"))
    .values(state=bindparam("b_state"), updated_at=bindparam("b_at"))
)
_SELECT_RESIDENT = select(residents_t.c.id, residents_t.c.preferred_language).where(
    residents_t.c.phone_e164 == bindparam("phone")
)
_SELECT_STEP = select(steps_t.c.step, steps_t.c.response).where(
    steps_t.c.call_id == bindparam("call_id"), steps_t.c.step == bindparam("step_no")
)
_SELECT_SESSION = select(sessions_t.c.state, sessions_t.c.step).where(
    sessions_t.c.call_id == bindparam("call_id")
)
_UPDATE_SESSION = (
    update(sessions_t)
    .where(sessions_t.c.call_id == bindparam("b_call_id"))
    .values(state=bindparam("b_state"), step=bindparam("b_step"), updated_at=bindparam("b_at"))
)
_INSERT_CALL = insert(calls_t).returning(calls_t.c.id)
# ``inline()``: nothing is fetched back (no implicit ``RETURNING id``), so the statements can
# be pipelined and cost no result handling.
_INSERT_SESSION = insert(sessions_t).inline()
_INSERT_STEP = insert(steps_t).inline()
_INSERT_EVENTS = insert(events_t).inline()
_INSERT_OUTBOX = insert(outbox_t).inline()
_INSERT_STATUS: dict[str, Any] = {}


def _insert_status(conn: Connection) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING RETURNING id`` into provider statuses, built once."""
    stmt = _INSERT_STATUS.get(conn.dialect.name)
    if stmt is None:
        stmt = insert_ignore(conn, status_t).returning(status_t.c.id)
        _INSERT_STATUS[conn.dialect.name] = stmt
    return stmt


def _ended(data: Mapping[str, Any]) -> dict[str, Any]:
    """A stored session marked ended, its sealed values gone."""
    kept = {k: v for k, v in (data.get("vars") or {}).items() if k != SEALED}
    return {**data, "vars": kept, "ended": True, "node": None}


class Sealer(Protocol):
    """Encrypts small mappings at rest (see :mod:`callcenter.messaging.sealing`)."""

    def seal(self, values: Mapping[str, str]) -> str:
        """An opaque token holding ``values``."""
        ...

    def open(self, token: str) -> dict[str, str]:
        """The mapping sealed in ``token``."""
        ...


class CallService:
    """Runs inbound (and later outbound) calls through the IVR engine, persistently.

    Sensitive session values (the engine keeps them under ``vars["sealed"]``: PINs, ID
    numbers, a new visit password to repeat) are encrypted with ``sealer`` whenever the
    session is stored, and so is the stored answer of any step taken while they existed
    (it may say them aloud); they are dropped for good when the call's IVR part ends.
    """

    def __init__(
        self,
        db: Database,
        engine: Engine,
        actions: ActionRegistry,
        clock: Clock,
        *,
        default_region: str = "CN",
        sealer: Sealer | None = None,
    ) -> None:
        self.db = db
        self.engine = engine
        self.actions = actions
        self.clock = clock
        self.default_region = default_region
        self.sealer = sealer

    # ------------------------------------------------------------ sealed values at rest

    def _store_state(self, state: SessionState) -> dict[str, Any]:
        data = state.to_data()
        secret = data["vars"].pop(SEALED, None)
        if secret and not state.ended:
            data["vars"][SEALED] = {SEALED_TOKEN: self._seal(secret)}
        return data

    def _load_state(self, data: Mapping[str, Any]) -> SessionState:
        state = SessionState.from_data(data)
        secret = state.vars.get(SEALED)
        if isinstance(secret, Mapping) and SEALED_TOKEN in secret:
            opened = self._open(str(secret[SEALED_TOKEN]))
            state = replace(state, vars={**state.vars, SEALED: opened})
        return state

    def _seal(self, data: Mapping[str, Any]) -> str:
        if self.sealer is None:
            raise RuntimeError("sensitive call data needs SECRET_KEY (no sealer configured)")
        return self.sealer.seal({"json": json.dumps(dict(data), ensure_ascii=False)})

    def _open(self, token: str) -> dict[str, Any]:
        if self.sealer is None:
            raise RuntimeError("sensitive call data needs SECRET_KEY (no sealer configured)")
        opened: dict[str, Any] = json.loads(self.sealer.open(token)["json"])
        return opened

    # ------------------------------------------------------------ webhooks

    def begin(
        self,
        *,
        provider: str,
        provider_call_id: str,
        caller: str | None,
        called: str | None,
        idempotency_key: str | None = None,
        language: str | None = None,
        direction: str = "inbound",
    ) -> Reply:
        """A call arrives: create it and play the entry flow (or replay if already begun)."""

        def work() -> Reply:
            with self.db.connection() as conn:
                return self._begin(
                    conn,
                    provider,
                    provider_call_id,
                    caller,
                    called,
                    idempotency_key,
                    language,
                    direction,
                )

        # A lost race (another worker created the same call) replays that worker's answer.
        return retry_once(work)

    def input(
        self,
        *,
        provider: str,
        provider_call_id: str,
        step: int,
        event: CallerInput,
        idempotency_key: str | None = None,
    ) -> Reply:
        """The caller answered the question asked at ``step``."""

        def work() -> Reply:
            with self.db.connection() as conn:
                return self._input(conn, provider, provider_call_id, step, event, idempotency_key)

        return retry_once(work)

    def provider_status(
        self,
        *,
        provider: str,
        provider_call_id: str,
        status: str,
        duration_s: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> bool:
        """Record a call status callback; returns ``False`` when it was a duplicate."""
        now = self.clock.now()
        status = status.strip().lower()[:32]
        with self.db.connection() as conn:
            added = inserted(
                conn.execute(
                    _insert_status(conn),
                    {
                        "provider": provider,
                        "kind": "call",
                        "provider_id": provider_call_id,
                        "status": status,
                        "detail": detail or {},
                        "at": now,
                    },
                )
            )
            if not added:
                return False
            row = conn.execute(
                _SELECT_CALL_STATUS, {"provider": provider, "provider_call_id": provider_call_id}
            ).first()
            if row is None:
                return True
            events = [self._event_row(row.id, None, "status", None, {"status": status}, now)]
            ending = status in TERMINAL_STATUSES and row.ended_at is None
            outcome = row.outcome or ("abandoned_in_ivr" if status == "completed" else status)
            if ending:
                detail = {"outcome": outcome, "duration_s": duration_s, "status": status}
                events.append(self._event_row(row.id, None, "end", None, detail, now))
            session = row.session_state
            # The writes read no results: on PostgreSQL they go in one round trip with the commit.
            with pipelined(conn):
                if ending:
                    conn.execute(
                        _END_CALL,
                        {
                            "b_id": row.id,
                            "b_status": status,
                            "b_at": now,
                            "b_duration_s": duration_s,
                            "b_outcome": outcome,
                        },
                    )
                if ending and session is not None and not session.get("ended"):
                    conn.execute(
                        _END_SESSION,
                        {"b_call_id": row.id, "b_state": _ended(session), "b_at": now},
                    )
                conn.execute(_INSERT_EVENTS, events)
                conn.commit()
        return True

    def queue_exit(
        self, *, provider: str, provider_call_id: str, result: str, queue_time_s: int | None
    ) -> None:
        """The caller left the waiting queue (answered, hung up, or an error)."""
        now = self.clock.now()
        result = result.strip().lower()[:32]
        with self.db.connection() as conn:
            row = conn.execute(
                _SELECT_CALL_END, {"provider": provider, "provider_call_id": provider_call_id}
            ).first()
            if row is None:
                return
            conn.execute(
                _INSERT_EVENTS,
                [
                    self._event_row(
                        row.id,
                        None,
                        "queue_exit",
                        row.queue,
                        {"result": result, "queue_time_s": queue_time_s},
                        now,
                    )
                ],
            )
            outcome = {
                "hangup": "abandoned_in_queue",
                "bridged": "answered",
                "bridging-in-process": "answered",
            }.get(result)
            if outcome is not None:
                conn.execute(update(calls_t).where(calls_t.c.id == row.id).values(outcome=outcome))

    # ------------------------------------------------------------ outbound calls

    def begin_outbound(
        self,
        *,
        provider: str,
        provider_call_id: str,
        party: str,
        flow: str,
        variables: Mapping[str, Any],
        language: str,
        idempotency_key: str | None = None,
    ) -> Reply:
        """An outbound call was answered: begin it in ``flow`` with ``variables``.

        ``party`` is the number called (E.164). The flow must start with an action node (it
        checks the call is still wanted before anything is said); ``variables`` are the
        session's variables before that action runs. A repeated request replays the answer.
        """

        def work() -> Reply:
            with self.db.connection() as conn:
                return self._begin_outbound(
                    conn,
                    provider,
                    provider_call_id,
                    party,
                    flow,
                    variables,
                    language,
                    idempotency_key,
                )

        return retry_once(work)

    def _begin_outbound(
        self,
        conn: Connection,
        provider: str,
        provider_call_id: str,
        party: str,
        flow_name: str,
        variables: Mapping[str, Any],
        language: str,
        idempotency_key: str | None,
    ) -> Reply:
        existing = conn.execute(
            _SELECT_CALL_ID, {"provider": provider, "provider_call_id": provider_call_id}
        ).first()
        if existing is not None:
            return self._replay(conn, existing.id, existing.provider_call_id, 0)
        flow = self.engine.flows.flows.get(flow_name)
        if flow is None:
            raise ValueError(f"no flow named {flow_name!r}")
        first = flow.nodes[flow.start]
        if not isinstance(first, ActionNode):
            raise ValueError(f"outbound flow {flow_name!r} must start with an action node")
        now = self.clock.now()
        if language not in ("zh-CN", "en"):
            language = self.engine.settings.default_language
        where = f"{flow.name}:{first.id}"
        state = SessionState(
            flow=flow.name,
            node=first.id,
            language=language,
            vars=dict(variables),
            caller=party,
            history=(where,),
        )
        result = Step(
            state=state,
            instructions=(),
            action=ActionRequest(name=first.action, args=dict(first.args), node=first.id),
            trace=(Trace("start", where, {"language": language, "direction": "outbound"}),),
        )
        resident = conn.execute(_SELECT_RESIDENT, {"phone": party}).first()
        resident_id = resident.id if resident is not None else None
        call_id = conn.execute(
            _INSERT_CALL,
            {
                "provider": provider,
                "provider_call_id": provider_call_id,
                "direction": "outbound",
                "from_e164": None,
                "to_e164": party,
                "resident_id": resident_id,
                "language": language,
                "status": "in-progress",
                "priority": 0,
                "red_flag": False,
                "started_at": now,
            },
        ).scalar_one()
        # The party called is who SMS intents of the flow go to.
        call = _CallRow(
            call_id, provider_call_id, party, resident_id, language, None, None, 0, False
        )
        log.info("outbound call %s to %s started (%s)", provider_call_id, mask(party), flow.name)
        return self._finish_step(
            conn, call, None, 0, result, {"event": "outbound"}, idempotency_key, language
        )

    # ------------------------------------------------------------ reading

    def transcript(self, provider: str, provider_call_id: str) -> list[TranscriptLine]:
        """The call's events in order."""
        with self.db.sessions() as s:
            call = s.scalar(
                select(Call).where(
                    Call.provider == provider, Call.provider_call_id == provider_call_id
                )
            )
            if call is None:
                return []
            rows = s.scalars(
                select(CallEvent).where(CallEvent.call_id == call.id).order_by(CallEvent.id)
            )
            return [TranscriptLine(r.step, r.kind, r.node, dict(r.detail)) for r in rows]

    def get_call(self, provider: str, provider_call_id: str) -> Call | None:
        """The call row (detached), or ``None``."""
        with self.db.sessions() as s:
            return s.scalar(
                select(Call).where(
                    Call.provider == provider, Call.provider_call_id == provider_call_id
                )
            )

    # ------------------------------------------------------------ internals

    def _begin(
        self,
        conn: Connection,
        provider: str,
        provider_call_id: str,
        caller_raw: str | None,
        called_raw: str | None,
        idempotency_key: str | None,
        language: str | None,
        direction: str,
    ) -> Reply:
        existing = conn.execute(
            _SELECT_CALL_ID, {"provider": provider, "provider_call_id": provider_call_id}
        ).first()
        if existing is not None:
            return self._replay(conn, existing.id, existing.provider_call_id, 0)
        now = self.clock.now()
        caller = normalize_caller_id(caller_raw, self.default_region)
        called = normalize_caller_id(called_raw, self.default_region)
        resident_id: int | None = None
        preferred: str | None = None
        if caller is not None:
            resident = conn.execute(_SELECT_RESIDENT, {"phone": caller}).first()
            if resident is None:
                conn.execute(
                    insert_ignore(conn, residents_t).values(
                        phone_e164=caller, is_demo=False, created_at=now, updated_at=now
                    )
                )
                resident = conn.execute(_SELECT_RESIDENT, {"phone": caller}).one()
            resident_id, preferred = resident.id, resident.preferred_language
        result = self.engine.start(
            Start(caller=caller, called=called, language=language or preferred), self.clock
        )
        call_id = conn.execute(
            _INSERT_CALL,
            {
                "provider": provider,
                "provider_call_id": provider_call_id,
                "direction": direction,
                "from_e164": caller,
                "to_e164": called,
                "resident_id": resident_id,
                "language": result.state.language,
                "status": "in-progress",
                "priority": 0,
                "red_flag": False,
                "started_at": now,
            },
        ).scalar_one()
        call = _CallRow(
            call_id,
            provider_call_id,
            caller,
            resident_id,
            result.state.language,
            None,
            None,
            0,
            False,
        )
        log.info("call %s from %s started (%s)", provider_call_id, mask(caller), direction)
        return self._finish_step(
            conn, call, None, 0, result, {"event": "start"}, idempotency_key, preferred
        )

    def _input(
        self,
        conn: Connection,
        provider: str,
        provider_call_id: str,
        step: int,
        event: CallerInput,
        idempotency_key: str | None,
    ) -> Reply:
        row = conn.execute(
            _SELECT_LIVE_CALL, {"provider": provider, "provider_call_id": provider_call_id}
        ).first()
        if row is None:
            # The first webhook never reached us (or the data was reset): start afresh.
            log.warning("input for unknown call %s; starting it", provider_call_id)
            return self._begin(
                conn, provider, provider_call_id, None, None, idempotency_key, None, "inbound"
            )
        call = _CallRow.of(row)
        # A step behind the session is a replay (a retried webhook, same URL): the question
        # asked at ``step`` was answered by step + 1, so that answer is given again. The
        # provider's idempotency token is stored with the step (unique per call) as well.
        if step < row.step:
            return self._replay(conn, call.id, call.provider_call_id, step + 1)
        state = self._load_state(row.state)
        if step > row.step or state.ended:
            # Not a question we asked (forged, or the call is already in a queue): ask again.
            conn.execute(
                _INSERT_EVENTS,
                [
                    self._event_row(
                        call.id,
                        row.step,
                        "stale_input",
                        state.node,
                        {"step": step},
                        self.clock.now(),
                    )
                ],
            )
            return Reply(
                provider_call_id=call.provider_call_id,
                step=row.step,
                instructions=self.engine.replay_prompt(state),
                ended=state.ended,
                replayed=True,
                language=state.language,
            )
        result = self.engine.handle(state, event, self.clock)
        return self._finish_step(
            conn,
            call,
            state,
            row.step + 1,
            result,
            _describe_input(event, state, self.engine),
            idempotency_key,
            None,
        )

    def _run_actions(
        self,
        conn: Connection,
        call: _CallRow,
        step: Step,
        out: list[ins.Instruction],
        traces: list[Trace],
    ) -> Step:
        """Run the service actions a step asks for, feeding results back to the engine."""
        action = step.action
        if action is None:
            return step
        with Session(bind=conn, join_transaction_mode="create_savepoint") as session:
            runs = 0
            while action is not None and runs < MAX_ACTIONS_PER_STEP:
                runs += 1
                ctx = ActionContext(
                    session=session,
                    call_id=call.id,
                    caller=call.from_e164,
                    language=step.state.language,
                    args=action.args,
                    clock=self.clock,
                    vars=step.state.vars,
                )
                outcome = self.actions.run(action.name, ctx)
                step = self.engine.handle(step.state, outcome, self.clock)
                out.extend(step.instructions)
                traces.extend(step.trace)
                action = step.action
            if action is not None:
                log.error("call %s: too many actions in one step", call.provider_call_id)
                step = self.engine.handle(step.state, ActionResult("error"), self.clock)
                out.extend(step.instructions)
                traces.extend(step.trace)
            session.commit()
        return step

    def _finish_step(
        self,
        conn: Connection,
        call: _CallRow,
        before: SessionState | None,
        step_no: int,
        result: Step,
        input_data: dict[str, Any],
        idempotency_key: str | None,
        preferred_language: str | None,
    ) -> Reply:
        now = self.clock.now()
        out: list[ins.Instruction] = list(result.instructions)
        traces: list[Trace] = list(result.trace)
        step = self._run_actions(conn, call, result, out, traces)
        state = step.state
        original = _CallRow(**vars(call))

        played: list[ins.Instruction] = []
        sms_rows: list[dict[str, Any]] = []
        for item in out:
            if isinstance(item, ins.SendSms):
                if call.from_e164 is None:
                    traces.append(
                        Trace(
                            "sms_skipped",
                            "",
                            {"template": item.template, "reason": "no caller number"},
                        )
                    )
                    continue
                sms_rows.append(self._sms_row(call, step_no, len(sms_rows), item, now))
                continue
            played.append(item)
            if isinstance(item, ins.Enqueue):
                call.queue = item.queue
                call.priority = item.priority
                call.outcome = "enqueued"
                call.red_flag = call.red_flag or item.reason == "red_flag"
                age = _keyed_age(state, before, now)
                if age is not None:
                    # The ID number goes with the IVR part of the call; the queue's priority
                    # rules (callers over 75) need only the age.
                    traces.append(Trace("caller_age", "", {"age": age}))
            elif isinstance(item, ins.Hangup):
                call.outcome = call.outcome or "completed_in_ivr"
        if any(t.kind == "red_flag" for t in traces):
            call.red_flag = True
        call.language = state.language

        changes = call.changes(original)
        language_chosen = any(t.kind == "language" for t in traces) or (
            before is None and preferred_language is None
        )
        response: dict[str, Any] = {
            "instructions": [ins.to_data(i) for i in played],
            "ended": state.ended,
            "language": state.language,
        }
        if state.vars.get(SEALED) or (before is not None and before.vars.get(SEALED)):
            # What this step says may include a sensitive value: replayable, not readable.
            response = {SEALED_TOKEN: self._seal(response)}
        # The step's writes read no results: on PostgreSQL they go to the server in one round
        # trip with the commit. The step's transaction ends here.
        with pipelined(conn):
            if changes:
                conn.execute(update(calls_t).where(calls_t.c.id == call.id).values(**changes))
            if call.resident_id is not None and language_chosen:
                conn.execute(
                    update(residents_t)
                    .where(
                        residents_t.c.id == call.resident_id,
                        residents_t.c.preferred_language.is_distinct_from(state.language),
                    )
                    .values(preferred_language=state.language, updated_at=now)
                )
            if before is None:
                conn.execute(
                    _INSERT_SESSION,
                    {
                        "call_id": call.id,
                        "provider_call_id": call.provider_call_id,
                        "state": self._store_state(state),
                        "step": step_no,
                        "updated_at": now,
                    },
                )
            else:
                conn.execute(
                    _UPDATE_SESSION,
                    {
                        "b_call_id": call.id,
                        "b_state": self._store_state(state),
                        "b_step": step_no,
                        "b_at": now,
                    },
                )
            conn.execute(
                _INSERT_STEP,
                {
                    "call_id": call.id,
                    "step": step_no,
                    "idempotency_key": idempotency_key,
                    "input": input_data,
                    "response": response,
                    "at": now,
                },
            )
            if sms_rows:
                conn.execute(_INSERT_OUTBOX, sms_rows)
            if traces:
                conn.execute(
                    _INSERT_EVENTS,
                    [
                        self._event_row(call.id, step_no, t.kind, t.node, dict(t.detail), now)
                        for t in traces
                    ],
                )
            conn.commit()
        return Reply(
            provider_call_id=call.provider_call_id,
            step=step_no,
            instructions=tuple(played),
            ended=state.ended,
            language=state.language,
        )

    @staticmethod
    def _sms_row(
        call: _CallRow, step_no: int, index: int, item: ins.SendSms, now: datetime
    ) -> dict[str, Any]:
        assert call.from_e164 is not None
        return {
            "channel": "sms",
            "to_e164": call.from_e164,
            "template": item.template,
            "language": item.language,
            "params": dict(item.params),
            "dedupe_key": f"call:{call.id}:step:{step_no}:sms:{index}",
            "essential": item.essential,
            "status": "pending",
            "due_at": now,
            "created_at": now,
            "call_id": call.id,
        }

    def _replay(self, conn: Connection, call_id: int, provider_call_id: str, step_no: int) -> Reply:
        done = conn.execute(_SELECT_STEP, {"call_id": call_id, "step_no": step_no}).first()
        if done is None:
            sess = conn.execute(_SELECT_SESSION, {"call_id": call_id}).one()
            state = self._load_state(sess.state)
            return Reply(
                provider_call_id,
                sess.step,
                self.engine.replay_prompt(state),
                state.ended,
                True,
                state.language,
            )
        data = done.response
        if SEALED_TOKEN in data:
            data = self._open(str(data[SEALED_TOKEN]))
        return Reply(
            provider_call_id=provider_call_id,
            step=done.step,
            instructions=tuple(ins.from_data(i) for i in data["instructions"]),
            ended=bool(data["ended"]),
            replayed=True,
            language=str(data.get("language", "zh-CN")),
        )

    @staticmethod
    def _event_row(
        call_id: int,
        step: int | None,
        kind: str,
        node: str | None,
        detail: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        if "speech" in detail:
            # What a caller says may hold a phone or ID number: kept masked, like the logs.
            detail = {**detail, "speech": mask_text(str(detail["speech"]))}
        return {
            "call_id": call_id,
            "at": now,
            "step": step,
            "kind": kind,
            "node": node or None,
            "detail": detail,
        }


def _describe_input(event: CallerInput, state: SessionState, engine: Engine) -> dict[str, Any]:
    """The input as stored with the step; digits for sensitive prompts are masked."""
    sensitive = False
    if state.node is not None:
        node = engine.flows.flows[state.flow].nodes.get(state.node)
        sensitive = bool(getattr(node, "sensitive", False))
    if isinstance(event, Digits):
        value = event.value[:64]
        return {"event": "digits", "value": "*" * len(value) if sensitive else value}
    if isinstance(event, Speech):
        return {
            "event": "speech",
            "text": "***" if sensitive else mask_text(event.text[:300]),
            "confidence": event.confidence,
        }
    return {"event": "no_input"}


def _keyed_age(state: SessionState, before: SessionState | None, now: datetime) -> int | None:
    """The caller's age in whole years from an ID number keyed in this call, if any."""
    for source in (state, before):
        sealed = source.vars.get(SEALED) if source is not None else None
        if isinstance(sealed, Mapping) and isinstance(sealed.get("id_number"), str):
            born = birth_date_from_id(sealed["id_number"].replace("*", "X"))
            if born is not None and born <= now.date():
                return age_on(born, now.date())
    return None


def instructions_text(instructions: Sequence[ins.Instruction]) -> list[str]:
    """The spoken text of a reply, in order (prompts inside gathers included)."""
    lines: list[str] = []
    for item in instructions:
        if isinstance(item, ins.Say):
            lines.append(item.text)
        elif isinstance(item, ins.Gather):
            lines.extend(p.text for p in item.prompts)
    return lines
