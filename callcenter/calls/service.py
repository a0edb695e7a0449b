"""The call service: one database transaction per webhook, the pure engine in the middle.

For every provider request the service loads the call's session (row-locked on PostgreSQL;
SQLite serialises writers with ``BEGIN IMMEDIATE``), checks whether this request was already
answered (the provider's idempotency token, or a step number that is behind the session), runs
the engine, runs any service action the flow asks for, writes the new state, the step's response,
the call events and any SMS intents (outbox rows), and commits. A replayed request gets the
stored answer again and never advances the call twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..clock import Clock
from ..db.engine import Database
from ..db.models import (
    Call,
    CallEvent,
    CallSession,
    CallStep,
    OutboxMessage,
    ProviderStatus,
    Resident,
)
from ..ivr import instructions as ins
from ..ivr.engine import (
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
from ..phone import mask, normalize_caller_id
from .actions import ActionContext, ActionRegistry

log = logging.getLogger(__name__)

#: Provider call statuses after which a call is over.
TERMINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
MAX_ACTIONS_PER_STEP = 8
CallerInput = Digits | Speech | NoInput


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


class CallService:
    """Runs inbound (and later outbound) calls through the IVR engine, persistently."""

    def __init__(
        self,
        db: Database,
        engine: Engine,
        actions: ActionRegistry,
        clock: Clock,
        *,
        default_region: str = "CN",
    ) -> None:
        self.db = db
        self.engine = engine
        self.actions = actions
        self.clock = clock
        self.default_region = default_region

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
        for attempt in (1, 2):
            try:
                with self.db.transaction() as s:
                    return self._begin(
                        s, provider, provider_call_id, caller, called, idempotency_key,
                        language, direction,
                    )
            except IntegrityError:
                # Another worker created the same call a moment ago: replay its answer.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

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
        for attempt in (1, 2):
            try:
                with self.db.transaction() as s:
                    return self._input(s, provider, provider_call_id, step, event, idempotency_key)
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

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
        with self.db.transaction() as s:
            exists = s.scalar(
                select(ProviderStatus.id).where(
                    ProviderStatus.provider == provider,
                    ProviderStatus.kind == "call",
                    ProviderStatus.provider_id == provider_call_id,
                    ProviderStatus.status == status,
                )
            )
            if exists is not None:
                return False
            s.add(
                ProviderStatus(
                    provider=provider, kind="call", provider_id=provider_call_id,
                    status=status, detail=detail or {}, at=now,
                )
            )
            call = self._lock_call(s, provider, provider_call_id)
            if call is None:
                return True
            self._event(s, call, None, "status", None, {"status": status})
            if status in TERMINAL_STATUSES and call.ended_at is None:
                call.status = status
                call.ended_at = now
                call.duration_s = duration_s
                if call.outcome is None:
                    call.outcome = "abandoned_in_ivr" if status == "completed" else status
                sess = s.get(CallSession, call.id)
                if sess is not None:
                    state = SessionState.from_data(sess.state)
                    if not state.ended:
                        sess.state = {**sess.state, "ended": True, "node": None}
                        sess.updated_at = now
                self._event(
                    s, call, None, "end", None,
                    {"outcome": call.outcome, "duration_s": duration_s, "status": status},
                )
        return True

    def queue_exit(
        self, *, provider: str, provider_call_id: str, result: str, queue_time_s: int | None
    ) -> None:
        """The caller left the waiting queue (answered, hung up, or an error)."""
        with self.db.transaction() as s:
            call = self._lock_call(s, provider, provider_call_id)
            if call is None:
                return
            result = result.strip().lower()[:32]
            self._event(s, call, None, "queue_exit", call.queue,
                        {"result": result, "queue_time_s": queue_time_s})
            if result == "hangup":
                call.outcome = "abandoned_in_queue"
            elif result in ("bridged", "bridging-in-process"):
                call.outcome = "answered"

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

    def _lock_call(self, s: Session, provider: str, provider_call_id: str) -> Call | None:
        return s.scalar(
            select(Call)
            .where(Call.provider == provider, Call.provider_call_id == provider_call_id)
            .with_for_update()
        )

    def _begin(
        self,
        s: Session,
        provider: str,
        provider_call_id: str,
        caller_raw: str | None,
        called_raw: str | None,
        idempotency_key: str | None,
        language: str | None,
        direction: str,
    ) -> Reply:
        call = self._lock_call(s, provider, provider_call_id)
        if call is not None:
            return self._replay(s, call, 0)
        now = self.clock.now()
        caller = normalize_caller_id(caller_raw, self.default_region)
        called = normalize_caller_id(called_raw, self.default_region)
        resident = None
        if caller is not None:
            resident = s.scalar(select(Resident).where(Resident.phone_e164 == caller))
            if resident is None:
                resident = Resident(phone_e164=caller, created_at=now, updated_at=now)
                s.add(resident)
                s.flush()
        chosen = language or (resident.preferred_language if resident else None)
        result = self.engine.start(Start(caller=caller, called=called, language=chosen), self.clock)
        call = Call(
            provider=provider,
            provider_call_id=provider_call_id,
            direction=direction,
            from_e164=caller,
            to_e164=called,
            resident_id=resident.id if resident else None,
            language=result.state.language,
            started_at=now,
        )
        s.add(call)
        s.flush()
        log.info("call %s from %s started (%s)", provider_call_id, mask(caller), direction)
        return self._finish_step(s, call, None, 0, result, {"event": "start"}, idempotency_key,
                                 resident)

    def _input(
        self,
        s: Session,
        provider: str,
        provider_call_id: str,
        step: int,
        event: CallerInput,
        idempotency_key: str | None,
    ) -> Reply:
        call = self._lock_call(s, provider, provider_call_id)
        if call is None:
            # The first webhook never reached us (or the data was reset): start afresh.
            log.warning("input for unknown call %s; starting it", provider_call_id)
            return self._begin(s, provider, provider_call_id, None, None, idempotency_key,
                               None, "inbound")
        sess = s.get(CallSession, call.id)
        assert sess is not None
        if idempotency_key:
            done = s.scalar(
                select(CallStep).where(
                    CallStep.call_id == call.id, CallStep.idempotency_key == idempotency_key
                )
            )
            if done is not None:
                return self._reply_from(call, done, replayed=True)
        if step < sess.step:
            return self._replay(s, call, step + 1)
        state = SessionState.from_data(sess.state)
        if step > sess.step or state.ended:
            # Not a question we asked (forged, or the call is already in a queue): ask again.
            self._event(s, call, sess.step, "stale_input", state.node, {"step": step})
            return Reply(
                provider_call_id=call.provider_call_id,
                step=sess.step,
                instructions=self.engine.replay_prompt(state),
                ended=state.ended,
                replayed=True,
                language=state.language,
            )
        result = self.engine.handle(state, event, self.clock)
        resident = s.get(Resident, call.resident_id) if call.resident_id else None
        return self._finish_step(
            s, call, sess, sess.step + 1, result, _describe_input(event, state, self.engine),
            idempotency_key, resident,
        )

    def _finish_step(
        self,
        s: Session,
        call: Call,
        sess: CallSession | None,
        step_no: int,
        result: Step,
        input_data: dict[str, Any],
        idempotency_key: str | None,
        resident: Resident | None,
    ) -> Reply:
        now = self.clock.now()
        out: list[ins.Instruction] = list(result.instructions)
        traces: list[Trace] = list(result.trace)
        step = result
        for _ in range(MAX_ACTIONS_PER_STEP):
            if step.action is None:
                break
            ctx = ActionContext(
                session=s,
                call_id=call.id,
                caller=call.from_e164,
                language=step.state.language,
                args=step.action.args,
                clock=self.clock,
            )
            outcome = self.actions.run(step.action.name, ctx)
            step = self.engine.handle(step.state, outcome, self.clock)
            out.extend(step.instructions)
            traces.extend(step.trace)
        else:
            if step.action is not None:
                log.error("call %s: too many actions in one step", call.provider_call_id)
                step = self.engine.handle(step.state, ActionResult("error"), self.clock)
                out.extend(step.instructions)
                traces.extend(step.trace)
        state = step.state

        played: list[ins.Instruction] = []
        sms_index = 0
        for item in out:
            if isinstance(item, ins.SendSms):
                self._queue_sms(s, call, step_no, sms_index, item, now, traces)
                sms_index += 1
                continue
            played.append(item)
            if isinstance(item, ins.Enqueue):
                call.queue = item.queue
                call.priority = item.priority
                call.outcome = "enqueued"
                call.red_flag = call.red_flag or item.reason == "red_flag"
            elif isinstance(item, ins.Hangup):
                call.outcome = call.outcome or "completed_in_ivr"
        if any(t.kind == "red_flag" for t in traces):
            call.red_flag = True
        call.language = state.language
        if resident is not None and resident.preferred_language != state.language and (
            any(t.kind == "language" for t in traces) or resident.preferred_language is None
        ):
            resident.preferred_language = state.language
            resident.updated_at = now

        if sess is None:
            sess = CallSession(
                call_id=call.id,
                provider_call_id=call.provider_call_id,
                state=state.to_data(),
                step=step_no,
                updated_at=now,
            )
            s.add(sess)
        else:
            sess.state = state.to_data()
            sess.step = step_no
            sess.updated_at = now
        response = {"instructions": [ins.to_data(i) for i in played], "ended": state.ended,
                    "language": state.language}
        s.add(
            CallStep(
                call_id=call.id,
                step=step_no,
                idempotency_key=idempotency_key,
                input=input_data,
                response=response,
                at=now,
            )
        )
        for trace in traces:
            self._event(s, call, step_no, trace.kind, trace.node, dict(trace.detail))
        s.flush()
        return Reply(
            provider_call_id=call.provider_call_id,
            step=step_no,
            instructions=tuple(played),
            ended=state.ended,
            language=state.language,
        )

    def _queue_sms(
        self,
        s: Session,
        call: Call,
        step_no: int,
        index: int,
        item: ins.SendSms,
        now: Any,
        traces: list[Trace],
    ) -> None:
        if call.from_e164 is None:
            traces.append(Trace("sms_skipped", "", {"template": item.template,
                                                     "reason": "no caller number"}))
            return
        s.add(
            OutboxMessage(
                channel="sms",
                to_e164=call.from_e164,
                template=item.template,
                language=item.language,
                params=dict(item.params),
                dedupe_key=f"call:{call.id}:step:{step_no}:sms:{index}",
                essential=item.essential,
                status="pending",
                due_at=now,
                created_at=now,
                call_id=call.id,
            )
        )

    def _replay(self, s: Session, call: Call, step_no: int) -> Reply:
        done = s.get(CallStep, (call.id, step_no))
        if done is None:
            sess = s.get(CallSession, call.id)
            assert sess is not None
            state = SessionState.from_data(sess.state)
            return Reply(call.provider_call_id, sess.step, self.engine.replay_prompt(state),
                         state.ended, True, state.language)
        return self._reply_from(call, done, replayed=True)

    @staticmethod
    def _reply_from(call: Call, done: CallStep, *, replayed: bool) -> Reply:
        data = done.response
        return Reply(
            provider_call_id=call.provider_call_id,
            step=done.step,
            instructions=tuple(ins.from_data(i) for i in data["instructions"]),
            ended=bool(data["ended"]),
            replayed=replayed,
            language=str(data.get("language", call.language)),
        )

    def _event(
        self,
        s: Session,
        call: Call,
        step: int | None,
        kind: str,
        node: str | None,
        detail: dict[str, Any],
    ) -> None:
        s.add(CallEvent(call_id=call.id, at=self.clock.now(), step=step, kind=kind,
                        node=node, detail=detail))


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
        return {"event": "speech", "text": "***" if sensitive else event.text[:300],
                "confidence": event.confidence}
    return {"event": "no_input"}


def instructions_text(instructions: Sequence[ins.Instruction]) -> list[str]:
    """The spoken text of a reply, in order (prompts inside gathers included)."""
    lines: list[str] = []
    for item in instructions:
        if isinstance(item, ins.Say):
            lines.append(item.text)
        elif isinstance(item, ins.Gather):
            lines.extend(p.text for p in item.prompts)
    return lines
