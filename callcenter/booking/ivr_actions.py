"""Booking actions for IVR flows (``ivr_flows/booking.yaml``).

The caller's choices so far travel in the session variable ``bk`` (every action returns it,
updated, and the flow stores it back): ``hospital_id``, ``department_id``, ``expert_id``
(``""`` = any doctor, i.e. a general clinic), ``date`` (ISO), ``slot_id``, with the spoken
labels ``hospital``, ``department``, ``doctor``, ``day``, ``time``. Lists for the ``choose``
node add ``choices``, ``refs``, ``menu`` and ``question``.

* ``booking_find`` (arg ``query``): what the caller said names a hospital, a department or an
  expert (outcomes ``hospital``, ``department``, ``expert``), several of them (``choose``),
  an existing booking ("取消预约": ``manage``) or nothing usable (``not_found``);
* ``booking_list`` (arg ``level``: hospital, department, doctor, date, slot): a page of
  choices (``list``) or ``empty`` with a spoken ``reason``;
* ``booking_pick``: resolves the number the caller chose (session variable ``pick``);
  outcome is the level that was completed, or ``list`` for the next page;
* ``booking_identify``, ``booking_readback``, ``booking_book``: the patient, the read-back
  and the booking itself; ``booking_verify``, ``booking_cancel``, ``booking_resend``: an
  existing booking, after its visit number and password.

Sensitive values (the ID number keyed, the password keyed, the new visit codes) are read
from and written to the session's ``sealed`` part only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from callcenter.calls.actions import ActionContext, ActionRegistry
from callcenter.config import BookingConfig
from callcenter.ivr.engine import SEALED, ActionResult
from callcenter.phone import InvalidPhoneNumber, normalize
from knowledge_base.ivr_actions import MORE, PAGE, short_name, spoken_menu
from knowledge_base.models import Department, Expert, Hospital
from knowledge_base.search import KnowledgeSearch
from knowledge_base.spoken import price_en, price_zh

from . import rules
from .identity import InvalidIdNumber, normalize_cn_id
from .models import Booking, Patient
from .ports import BookingBackend, Slot, SlotQuery
from .rules import BookingRefused
from .service import BookingRequest, BookingService, BookingView

#: The action names this module registers (flows are validated against them).
ACTION_NAMES = frozenset(
    {
        "booking_find",
        "booking_list",
        "booking_pick",
        "booking_identify",
        "booking_readback",
        "booking_book",
        "booking_verify",
        "booking_cancel",
        "booking_resend",
    }
)
#: Refusals that mean "this slot is no longer there": choose another time.
GONE = frozenset({"slot_full", "clinic_cancelled", "slot_unknown", "slot_started"})
#: Below this score a spoken name is not taken as the caller's choice.
MIN_CONFIDENCE = 0.6
#: Words that ask about an existing booking rather than for a new one.
MANAGE_WORDS = (
    "取消",
    "退号",
    "查询预约",
    "我的预约",
    "已有的预约",
    "重发",
    "短信",
    "密码",
    "就诊号",
    "cancel",
    "my booking",
    "my appointment",
    "resend",
    "text message",
    "password",
    "visit number",
)
#: Words that say "booking" and nothing about where.
_BOOKING_WORDS = (
    "我想预约",
    "我要预约",
    "我想挂号",
    "我要挂号",
    "预约挂号",
    "预约",
    "挂号",
    "挂个号",
    "挂",
    "的号",
    "我想",
    "我要",
    "帮我",
    "一个",
    "book an appointment",
    "make an appointment",
    "appointment",
    "booking",
    "book",
    "i want to",
    "i would like to",
    "i'd like to",
    "please",
    "with",
    "at",
    "an",
    "a",
)
_WEEKDAYS_ZH = "一二三四五六日"
_WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS_EN = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_QUESTIONS = {
    "hospital": ("请选择医院：", "Which hospital?"),
    "department": ("请选择科室：", "Which department?"),
    "doctor": ("请选择医生：", "Which doctor?"),
    "date": ("请选择就诊日期：", "Which day?"),
    "slot": ("请选择就诊时段：", "Which time?"),
    "choose": ("您要预约的是：", "Did you mean:"),
}
_LEVELS = ("hospital", "department", "doctor", "date", "slot")


def _zh(language: str) -> bool:
    return language != "en"


def spoken_day(day: date, language: str) -> str:
    """``11月28日星期六`` / ``Saturday 28 November``."""
    if _zh(language):
        return f"{day.month}月{day.day}日星期{_WEEKDAYS_ZH[day.weekday()]}"
    return f"{_WEEKDAYS_EN[day.weekday()]} {day.day} {_MONTHS_EN[day.month - 1]}"


def spoken_time(moment: datetime, language: str) -> str:
    """``上午9点30分`` / ``9:30 am`` (local time)."""
    hour, minute = moment.hour, moment.minute
    if _zh(language):
        return _zh_part(hour) + _zh_clock(hour, minute)
    suffix = "am" if hour < 12 else "pm"
    shown = hour if 1 <= hour <= 12 else abs(hour - 12) or 12
    return f"{shown}:{minute:02d} {suffix}"


def _zh_part(hour: int) -> str:
    if hour < 12:
        return "上午"
    if hour < 13:
        return "中午"
    return "下午" if hour < 18 else "晚上"


def _zh_clock(hour: int, minute: int) -> str:
    shown = hour if hour <= 12 else hour - 12
    return f"{shown}点" + (f"{minute}分" if minute else "")


def spoken_digits(value: str, language: str) -> str:
    """Digits one by one with a pause after every group of four, slow enough to write down.

    ``1`` is said 幺 in Chinese number reading, so it is never heard as 七.
    """
    words = "零幺二三四五六七八九" if _zh(language) else None
    groups = [value[i : i + 4] for i in range(0, len(value), 4)]
    if words is not None:
        return "，".join("、".join(words[int(d)] for d in g) for g in groups)
    return ", ".join(" ".join(g) for g in groups)


def _draft(ctx: ActionContext) -> dict[str, Any]:
    """The choices so far, without the previous list."""
    found = ctx.vars.get("bk")
    keep = ("choices", "refs", "menu", "question", "reason", "level", "page")
    if not isinstance(found, Mapping):
        return {}
    return {k: v for k, v in found.items() if k not in keep}


class BookingActions:
    """The booking actions, bound to the search, the inventory backend and the service."""

    def __init__(
        self,
        knowledge: KnowledgeSearch,
        service: BookingService | None,
        backend: BookingBackend,
        settings: BookingConfig,
        timezone: str,
    ) -> None:
        self.knowledge = knowledge
        self._service = service
        self.backend = backend
        self.settings = settings
        self.tz = ZoneInfo(timezone)

    @property
    def service(self) -> BookingService:
        """The booking service; without ``SECRET_KEY`` there is none, and the action fails
        (the caller hears an apology and reaches a person)."""
        if self._service is None:
            raise RuntimeError("booking needs SECRET_KEY (visit passwords are keyed with it)")
        return self._service

    def register(self, registry: ActionRegistry) -> None:
        """Add the booking actions to ``registry``."""
        for name in sorted(ACTION_NAMES):
            registry.register(name, getattr(self, name))

    # ------------------------------------------------------------ where and when

    def booking_find(self, ctx: ActionContext) -> ActionResult:
        """Take a spoken hospital / department / expert as the caller's first choices."""
        query = ctx.args.get("query", "").strip()
        lowered = query.lower()
        if any(word in lowered for word in MANAGE_WORDS):
            return ActionResult("manage", {})
        rest = lowered
        for word in sorted(_BOOKING_WORDS, key=len, reverse=True):
            rest = rest.replace(word, " ") if not word.isascii() else _drop_word(rest, word)
        if not rest.strip(" ，。,.!！?？"):
            return ActionResult("not_found", {})
        result = self.knowledge.search(
            query,
            types=("department", "expert", "hospital"),
            language="en" if ctx.language == "en" else "zh",
            limit=3,
            today=self._today(ctx),
        )
        hits = [h for h in result.hits if h.score >= MIN_CONFIDENCE]
        if not hits:
            return ActionResult("not_found", {})
        if result.ambiguous and len(hits) >= 2:
            refs = [f"{h.type}:{h.id}" for h in hits]
            labels = [self._hit_label(ctx.session, h.type, h.id, ctx.language) for h in hits]
            return ActionResult("choose", self._list(ctx, {}, "choose", labels, refs))
        top = hits[0]
        return self._resolve(ctx, {}, f"{top.type}:{top.id}")

    def booking_list(self, ctx: ActionContext) -> ActionResult:
        """One page of hospitals, departments, doctors, dates or times to choose from."""
        level = ctx.args.get("level", "")
        page_text = ctx.args.get("page", "1")
        page = int(page_text) if page_text.isascii() and page_text.isdigit() else 1
        return self._page(ctx, _draft(ctx), level, page)

    def booking_pick(self, ctx: ActionContext) -> ActionResult:
        """The caller chose number ``pick`` from the list in ``bk``."""
        found = ctx.vars.get("bk")
        pick = ctx.vars.get("pick")
        refs = str(found.get("refs", "")).split(",") if isinstance(found, Mapping) else []
        if not isinstance(pick, int) or not 1 <= pick <= len(refs):
            return ActionResult("error", {})
        return self._resolve(ctx, _draft(ctx), refs[pick - 1])

    # ------------------------------------------------------------ who, and booking

    def booking_identify(self, ctx: ActionContext) -> ActionResult:
        """Is the patient with the ID number keyed (``sealed.id_number``) known already?

        ``known``: ``bk.patient`` is their masked name (张*), and booking uses the stored
        name; ``new``: the flow asks for the name; ``blocked``: too many no-shows
        (``bk.reason`` says until when).
        """
        draft = _draft(ctx)
        patient = self._known_patient(ctx)
        if patient is None:
            return ActionResult("new", {**draft, "patient_known": False})
        no_shows = list(
            ctx.session.scalars(
                select(Booking.visit_date).where(
                    Booking.patient_id == patient.id, Booking.status == "no_show"
                )
            )
        )
        refusal = rules.check_no_show(self._today(ctx), no_shows, self.settings)
        if refusal is not None:
            return ActionResult("blocked", {**draft, "reason": refusal.message(ctx.language)})
        masked = patient.name[:1] + "*" * max(len(patient.name) - 1, 1)
        return ActionResult("known", {**draft, "patient_known": True, "patient": masked})

    def booking_readback(self, ctx: ActionContext) -> ActionResult:
        """Say back everything about to be booked; ``gone`` when the slot filled meanwhile."""
        draft = _draft(ctx)
        slot = self.backend.get_slot(ctx.session, str(draft.get("slot_id", "")))
        if slot is None or slot.available <= 0 or slot.status != "open":
            return ActionResult("gone", draft)
        phone = self._contact(ctx)
        last4 = phone[-4:] if phone else ""
        patient = str(draft.get("patient") or ctx.vars.get("patient_name") or "")
        parts = [str(draft.get(k, "")) for k in ("hospital", "department", "doctor", "day", "time")]
        fee = slot.fee
        if _zh(ctx.language):
            text = f"您预约的是：{parts[0]}{parts[1]}，{parts[2]}，{parts[3]}{parts[4]}"
            text += f"，挂号费{price_zh(fee)}" if fee is not None else ""
            tail = spoken_digits(last4, ctx.language)
            text += f"；就诊人：{patient}；短信发送到尾号{tail}的手机。"
        else:
            text = f"You are booking {parts[2]}, {parts[1]}, {parts[0]}, {parts[3]} at {parts[4]}"
            text += f"; the fee is {price_en(fee)}" if fee is not None else ""
            text += f"; patient {patient}; the text message goes to the mobile ending "
            text += f"{spoken_digits(last4, ctx.language)}."
        return ActionResult("ok", {**draft, "readback": text})

    def booking_book(self, ctx: ActionContext) -> ActionResult:
        """Book the chosen slot. ``booked``: the visit number and password, for reading out
        (the flow stores this result in ``sealed``); ``gone``: the slot filled or closed;
        ``refused``: a rule said no (``reason`` says which, in the caller's language)."""
        draft = _draft(ctx)
        sealed = ctx.vars.get(SEALED)
        number = str(sealed.get("id_number", "")) if isinstance(sealed, Mapping) else ""
        patient = self._known_patient(ctx) if draft.get("patient_known") else None
        name = patient.name if patient is not None else str(ctx.vars.get("patient_name", ""))
        request = BookingRequest(
            slot_id=str(draft.get("slot_id", "")),
            name=name,
            id_type="cn_id",
            id_number=number,
            contact_phone=self._contact(ctx) or "",
            channel="ivr",
            created_by="ivr",
            language="en" if ctx.language == "en" else "zh-CN",
            call_id=ctx.call_id,
        )
        try:
            receipt = self.service.book(request, tx=ctx.session)
        except BookingRefused as exc:
            if exc.refusal.code in GONE:
                return ActionResult("gone", {})
            return ActionResult("refused", {"reason": exc.refusal.message(ctx.language)})
        lang = ctx.language
        return ActionResult(
            "booked",
            {
                "visit_number_spoken": spoken_digits(receipt.visit_number, lang),
                "password_spoken": spoken_digits(receipt.password, lang),
            },
        )

    # ------------------------------------------------------------ an existing booking

    def booking_verify(self, ctx: ActionContext) -> ActionResult:
        """Check the visit number and password keyed (or said); every attempt is recorded."""
        number = str(ctx.vars.get("visit_number", ""))
        result = self.service.verify(number, self._pin(ctx), call_id=ctx.call_id, tx=ctx.session)
        if result.outcome == "ok" and result.booking is not None:
            return ActionResult("ok", self._summary(result.booking, ctx.language))
        if result.outcome in ("wrong", "unknown"):
            left = result.attempts_left
            if _zh(ctx.language):
                text = f"您还可以再试{left}次。" if left else ""
            else:
                text = f"You can try {left} more time{'s' if left != 1 else ''}." if left else ""
            return ActionResult("wrong", {"left_text": text})
        return ActionResult(result.outcome, {})

    def booking_cancel(self, ctx: ActionContext) -> ActionResult:
        """Cancel the booking this call verified; ``too_late`` after the deadline."""
        number = str(ctx.vars.get("visit_number", ""))
        try:
            self.service.cancel(number, call_id=ctx.call_id, tx=ctx.session)
        except BookingRefused as exc:
            return ActionResult("too_late", {"reason": exc.refusal.message(ctx.language)})
        return ActionResult("cancelled", {})

    def booking_resend(self, ctx: ActionContext) -> ActionResult:
        """Send the booking SMS again (with the password this call proved)."""
        number = str(ctx.vars.get("visit_number", ""))
        result = self.service.resend_sms(
            number,
            self._pin(ctx),
            call_id=ctx.call_id,
            request_key=f"call-{ctx.call_id}",
            tx=ctx.session,
        )
        return ActionResult("sent" if result.outcome == "ok" else result.outcome, {})

    # ------------------------------------------------------------ helpers

    def _pin(self, ctx: ActionContext) -> str:
        sealed = ctx.vars.get(SEALED)
        return str(sealed.get("pin", "")) if isinstance(sealed, Mapping) else ""

    def _contact(self, ctx: ActionContext) -> str | None:
        typed = ctx.vars.get("contact_phone")
        if typed:
            try:
                return normalize(str(typed), "CN")
            except InvalidPhoneNumber:
                return None
        return ctx.caller

    def _known_patient(self, ctx: ActionContext) -> Patient | None:
        sealed = ctx.vars.get(SEALED)
        raw = str(sealed.get("id_number", "")) if isinstance(sealed, Mapping) else ""
        try:
            number = normalize_cn_id(raw)
        except InvalidIdNumber:
            return None
        key = self.service.secrets.id_hmac("cn_id", number)
        return ctx.session.scalar(
            select(Patient).where(Patient.id_type == "cn_id", Patient.id_hmac == key)
        )

    def _summary(self, view: BookingView, language: str) -> dict[str, Any]:
        lang = "en" if language == "en" else "zh-CN"
        labels = view.labels.get(lang) or next(iter(view.labels.values()), None)
        if labels is None:
            return {"summary": "", "short": view.visit_number}
        if lang == "en":
            summary = (
                f"Your booking: {labels.doctor}, {labels.department}, {labels.hospital}, "
                f"{labels.when}."
            )
            if not view.cancellable:
                summary += " It can no longer be cancelled by phone."
            short = f"on {labels.when}"
        else:
            where = f"{labels.hospital}{labels.department}"
            summary = f"您的预约：{where}，{labels.doctor}，{labels.when}。"
            if not view.cancellable:
                summary += "已过电话取消的截止时间。"
            short = labels.when
        return {"summary": summary, "short": short}

    # ------------------------------------------------------------ helpers for lists

    def _today(self, ctx: ActionContext) -> date:
        return ctx.clock.now().astimezone(self.tz).date()

    def _last_day(self, ctx: ActionContext) -> date:
        return rules.last_bookable_date(ctx.clock.now().astimezone(self.tz), self.settings)

    def _resolve(self, ctx: ActionContext, draft: dict[str, Any], ref: str) -> ActionResult:
        """Apply one chosen reference to the draft; the outcome names the completed level."""
        kind, _, value = ref.partition(":")
        lang = ctx.language
        session = ctx.session
        if kind == "more":
            level, _, page = value.partition(":")
            return self._page(ctx, draft, level, int(page) if page.isdigit() else 1)
        if kind == "hospital":
            hospital = session.get(Hospital, value)
            if hospital is None:
                return ActionResult("error", {})
            draft = {"hospital_id": hospital.id, "hospital": _hospital_label(hospital, lang)}
            return ActionResult("hospital", draft)
        if kind == "department":
            dept = session.get(Department, value)
            if dept is None:
                return ActionResult("error", {})
            hospital = session.get(Hospital, dept.hospital_id)
            draft = {
                "hospital_id": dept.hospital_id,
                "hospital": _hospital_label(hospital, lang) if hospital else "",
                "department_id": dept.id,
                "department": dept.name_en if lang == "en" else dept.name_zh,
            }
            return ActionResult("department", draft)
        if kind == "expert":
            expert = session.get(Expert, value)
            if expert is None or expert.department_id is None:
                return ActionResult("error", {})
            dept = session.get(Department, expert.department_id)
            hospital = session.get(Hospital, expert.hospital_id)
            draft = {
                "hospital_id": expert.hospital_id,
                "hospital": _hospital_label(hospital, lang) if hospital else "",
                "department_id": expert.department_id,
                "department": (dept.name_en if lang == "en" else dept.name_zh) if dept else "",
                "expert_id": expert.id,
                "doctor": _expert_label(expert, lang),
            }
            return ActionResult("expert", draft)
        if kind == "doctor":
            if value:
                expert = session.get(Expert, value)
                if expert is None:
                    return ActionResult("error", {})
                label = _expert_label(expert, lang)
            else:
                label = "普通门诊" if _zh(lang) else "any doctor"
            return ActionResult("doctor", {**draft, "expert_id": value, "doctor": label})
        if kind == "date":
            day = date.fromisoformat(value)
            return ActionResult("date", {**draft, "date": value, "day": spoken_day(day, lang)})
        if kind == "slot":
            slot = self.backend.get_slot(session, value)
            if slot is None:
                return ActionResult("error", {})
            local = slot.starts_at.astimezone(self.tz)
            return ActionResult(
                "slot",
                {
                    **draft,
                    "slot_id": slot.id,
                    "date": local.date().isoformat(),
                    "day": spoken_day(local.date(), lang),
                    "time": spoken_time(local, lang),
                    "fee": str(slot.fee) if slot.fee is not None else "",
                },
            )
        return ActionResult("error", {})

    def _page(
        self, ctx: ActionContext, draft: dict[str, Any], level: str, page: int
    ) -> ActionResult:
        items = self._items(ctx, draft, level)
        if items is None:
            return ActionResult("error", {})
        start = (max(page, 1) - 1) * PAGE
        chunk = items[start : start + PAGE]
        if not chunk:
            return ActionResult("empty", {**draft, "reason": self._nothing(ctx, draft, level)})
        refs = [ref for ref, _label in chunk]
        labels = [label for _ref, label in chunk]
        if len(items) > start + PAGE:
            refs.append(f"more:{level}:{page + 1}")
            labels.append(MORE["en" if ctx.language == "en" else "zh-CN"])
        return ActionResult("list", self._list(ctx, draft, level, labels, refs))

    def _list(
        self,
        ctx: ActionContext,
        draft: dict[str, Any],
        level: str,
        labels: list[str],
        refs: list[str],
    ) -> dict[str, Any]:
        zh, en = _QUESTIONS[level]
        lang = "en" if ctx.language == "en" else "zh-CN"
        return {
            **draft,
            **spoken_menu(labels, refs, lang),
            "question": en if lang == "en" else zh,
            "level": level,
        }

    def _nothing(self, ctx: ActionContext, draft: Mapping[str, Any], level: str) -> str:
        days = self.settings.horizon_days
        if _zh(ctx.language):
            where = f"{draft.get('hospital', '')}{draft.get('department', '')}"
            who = draft.get("doctor", "")
            return f"抱歉，{where}{who}在{days}天内没有可预约的号源。"
        where = ", ".join(str(draft[k]) for k in ("doctor", "department", "hospital") if k in draft)
        return f"Sorry, {where or 'this clinic'} has no free appointments in the next {days} days."

    def _items(
        self, ctx: ActionContext, draft: Mapping[str, Any], level: str
    ) -> list[tuple[str, str]] | None:
        """(reference, spoken label) for every choice at ``level``."""
        session = ctx.session
        lang = ctx.language
        if level == "hospital":
            rows = session.scalars(select(Hospital).order_by(Hospital.id))
            return [(f"hospital:{h.id}", _hospital_label(h, lang)) for h in rows]
        hospital_id = str(draft.get("hospital_id", ""))
        if level == "department":
            depts = session.scalars(
                select(Department)
                .where(Department.hospital_id == hospital_id)
                .order_by(Department.id)
            )
            return [(f"department:{d.id}", d.name_en if lang == "en" else d.name_zh) for d in depts]
        department_id = str(draft.get("department_id", ""))
        if not hospital_id or not department_id or level not in _LEVELS:
            return None
        today = self._today(ctx)
        if level == "doctor":
            slots = self._slots(ctx, draft, today, self._last_day(ctx), any_doctor=True)
            experts: dict[str, None] = {}
            general = False
            for slot in slots:
                if slot.expert_id:
                    experts.setdefault(slot.expert_id)
                else:
                    general = True
            items = (
                [("doctor:", "普通门诊，任意医生" if _zh(lang) else "any doctor")]
                if general
                else []
            )
            for expert_id in experts:
                expert = session.get(Expert, expert_id)
                if expert is not None:
                    items.append((f"doctor:{expert_id}", _expert_label(expert, lang)))
            return items
        if level == "date":
            slots = self._slots(ctx, draft, today, self._last_day(ctx))
            days = sorted({s.starts_at.astimezone(self.tz).date() for s in slots})
            return [(f"date:{d.isoformat()}", spoken_day(d, lang)) for d in days]
        chosen = str(draft.get("date", ""))
        try:
            day = date.fromisoformat(chosen)
        except ValueError:
            return None
        slots = self._slots(ctx, draft, day, day)
        return [(f"slot:{s.id}", _slot_label(s, self.tz, lang)) for s in slots]

    def _slots(
        self,
        ctx: ActionContext,
        draft: Mapping[str, Any],
        start: date,
        end: date,
        *,
        any_doctor: bool = False,
    ) -> list[Slot]:
        query = SlotQuery(
            hospital_id=str(draft.get("hospital_id", "")),
            department_id=str(draft.get("department_id", "")),
            start=start,
            end=end,
            expert_id=(str(draft.get("expert_id") or "") or None) if not any_doctor else None,
            any_doctor=any_doctor,
            only_available=True,
        )
        now = ctx.clock.now()
        return [s for s in self.backend.find_slots(ctx.session, query) if s.starts_at > now]

    def _hit_label(self, session: Session, kind: str, entity_id: str, language: str) -> str:
        if kind == "hospital":
            hospital = session.get(Hospital, entity_id)
            return _hospital_label(hospital, language) if hospital else entity_id
        if kind == "department":
            dept = session.get(Department, entity_id)
            if dept is None:
                return entity_id
            hospital = session.get(Hospital, dept.hospital_id)
            where = _hospital_label(hospital, language) if hospital else ""
            name = dept.name_en if language == "en" else dept.name_zh
            return f"{name}, {where}" if language == "en" else f"{where}{name}"
        expert = session.get(Expert, entity_id)
        if expert is None:
            return entity_id
        hospital = session.get(Hospital, expert.hospital_id)
        where = _hospital_label(hospital, language) if hospital else ""
        label = _expert_label(expert, language)
        return f"{label}, {where}" if language == "en" else f"{where}{label}"


def _drop_word(text: str, word: str) -> str:
    """``text`` without the English ``word`` as a whole word (or phrase)."""
    padded = f" {text} "
    while f" {word} " in padded:
        padded = padded.replace(f" {word} ", " ")
    return padded.strip()


def _hospital_label(hospital: Hospital | None, language: str) -> str:
    if hospital is None:
        return ""
    return hospital.name_en if language == "en" else short_name(hospital)


def _expert_label(expert: Expert, language: str) -> str:
    if language == "en":
        return f"{expert.title_en + ' ' if expert.title_en else ''}{expert.name_en}".strip()
    return f"{expert.name_zh}{expert.title_zh or ''}"


def _slot_label(slot: Slot, tz: ZoneInfo, language: str) -> str:
    start = slot.starts_at.astimezone(tz)
    end = slot.ends_at.astimezone(tz)
    if _zh(language):
        left = f"，余{slot.available}个号" if slot.available <= 5 else ""
        until = _zh_clock(end.hour, end.minute)
        if _zh_part(end.hour) != _zh_part(start.hour):
            until = _zh_part(end.hour) + until
        return f"{spoken_time(start, language)}到{until}{left}"
    left = f", {slot.available} left" if slot.available <= 5 else ""
    return f"{spoken_time(start, language)} to {spoken_time(end, language)}{left}"


__all__ = ["BookingActions", "spoken_day", "spoken_digits", "spoken_time"]
