"""Knowledge-base service actions for IVR flows: ``kb_search`` and ``kb_answer``.

``kb_search`` (args ``query``, optional ``types`` as a comma list) runs the same search as the
CLI and the API and has one of these outcomes:

* ``found`` / ``found_article``: a confident match; data ``answer`` (to read), ``title``,
  ``ref`` (``type:id``) and, for articles, ``sms`` (the text an SMS may carry);
* ``choose``: the best matches are too close to call; data ``choices`` (up to 3 spoken
  labels) and ``refs`` for ``kb_answer``, and ``menu`` (the choices said with their numbers);
* ``not_found``: nothing matched well enough (or the query was empty).

``kb_answer`` (args ``refs``, ``pick``) answers with the chosen entry. Every article read to a
caller is recorded on the call (event ``article_read`` with the article and version).

``kb_browse`` (args ``type``, ``parent``, ``page``) lists entries for callers who use the keypad:
hospitals; the departments of a hospital; the experts of a department; drug categories; the
drugs of a category; the readable articles of a category. Outcome ``list`` with ``choices``,
``refs`` and ``menu`` as for ``choose`` (8 to a page, the 9th choice "more" turns the page), or
``empty``. Picking "more" makes ``kb_answer`` answer ``more`` (data ``type``, ``parent``,
``page``); picking a drug category answers ``category`` (data ``type``, ``parent``).
"""

from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from callcenter.calls.actions import ActionContext, ActionRegistry
from callcenter.db.models import CallEvent
from callcenter.ivr.engine import ActionResult

from .answers import Answer, answer
from .articles import readable_version
from .models import Article, Department, Drug, Expert, Hospital
from .search import Hit, KnowledgeSearch

#: Below this score a match is not read out; the caller is offered a person instead.
MIN_CONFIDENCE = 0.6
MAX_CHOICES = 3
#: The action names this module registers (flows are validated against them).
ACTION_NAMES = frozenset({"kb_search", "kb_answer", "kb_browse"})
#: Words that name a kind of thing, not a thing: "医院" alone asks about no hospital.
GENERIC_WORDS = (
    "我想查询",
    "我想查",
    "我想问",
    "我要查",
    "我想了解",
    "请问",
    "查询",
    "查一下",
    "问一下",
    "医院",
    "科室",
    "专家",
    "医生",
    "大夫",
    "门诊",
    "药品",
    "药价",
    "药",
    "价格",
    "多少钱",
    "健康知识",
    "健康",
    "知识",
    "信息",
    "的",
    "一下",
    "hospital",
    "hospitals",
    "department",
    "doctor",
    "expert",
    "clinic",
    "medicine",
    "drug",
    "price",
    "information",
    "info",
    "about",
    "i want",
    "want",
    "please",
    "the",
    "a",
    "to",
    "know",
    "ask",
    "find",
)
#: Entries per keypad page: keys 1-8, and 9 for "more".
PAGE = 8
MORE = {"zh-CN": "更多", "en": "more"}


def _today(ctx: ActionContext, tz: ZoneInfo) -> date:
    return ctx.clock.now().astimezone(tz).date()


def _result(ctx: ActionContext, entity_type: str, entity_id: str, found: Answer) -> ActionResult:
    data: dict[str, Any] = {
        "answer": found.text,
        "title": found.title,
        "ref": f"{entity_type}:{entity_id}",
        "type": entity_type,
        "id": entity_id,
    }
    if found.article_id is not None:
        data["sms"] = found.sms_text or ""
        ctx.session.add(
            CallEvent(
                call_id=ctx.call_id,
                at=ctx.clock.now(),
                kind="article_read",
                node=None,
                detail={"article_id": found.article_id, "version": found.article_version},
            )
        )
        return ActionResult("found_article", data)
    return ActionResult("found", data)


class KnowledgeActions:
    """The knowledge-base actions, bound to one search and the hotline's time zone."""

    def __init__(self, search: KnowledgeSearch, timezone: str) -> None:
        self.search = search
        self.tz = ZoneInfo(timezone)

    def register(self, registry: ActionRegistry) -> None:
        """Add ``kb_search`` and ``kb_answer`` to ``registry``."""
        registry.register("kb_search", self.kb_search)
        registry.register("kb_answer", self.kb_answer)
        registry.register("kb_browse", self.kb_browse)

    def kb_search(self, ctx: ActionContext) -> ActionResult:
        """Search and answer, offer a choice, or report nothing found."""
        query = ctx.args.get("query", "").strip()
        if not query or _only_generic(query):
            return ActionResult("not_found", {})
        types = [t.strip() for t in ctx.args.get("types", "").split(",") if t.strip()] or None
        today = _today(ctx, self.tz)
        result = self.search.search(
            query,
            types=types,
            language="en" if ctx.language == "en" else "zh",
            limit=MAX_CHOICES,
            today=today,
        )
        hits = [h for h in result.hits if h.score >= MIN_CONFIDENCE]
        if not hits:
            return ActionResult("not_found", {"query": query})
        # One character ("王") names nobody in particular: let the caller choose.
        vague = len(result.query) <= 1
        if (result.ambiguous or vague) and len(hits) >= 2:
            choices = [_label(ctx.session, h, ctx.language) for h in hits]
            refs = [f"{h.type}:{h.id}" for h in hits]
            return ActionResult("choose", spoken_menu(choices, refs, ctx.language))
        top = hits[0]
        found = answer(ctx.session, top.type, top.id, ctx.language, today)
        if found is None:
            return ActionResult("not_found", {"query": query})
        return _result(ctx, top.type, top.id, found)

    def kb_answer(self, ctx: ActionContext) -> ActionResult:
        """Answer with the entry the caller picked from a ``choose`` list."""
        refs = [r for r in ctx.args.get("refs", "").split(",") if ":" in r]
        pick = ctx.args.get("pick", "")
        if not pick.isdigit() or not 1 <= int(pick) <= len(refs):
            return ActionResult("not_found", {})
        ref = refs[int(pick) - 1]
        if ref.startswith("more:"):
            _more, kind, parent, page = ref.split(":", 3)
            return ActionResult("more", {"type": kind, "parent": parent, "page": page})
        if ref.startswith("drugcat:"):
            return ActionResult("category", {"type": "drug", "parent": ref[8:], "page": "1"})
        entity_type, _, entity_id = ref.partition(":")
        found = answer(ctx.session, entity_type, entity_id, ctx.language, _today(ctx, self.tz))
        if found is None:
            return ActionResult("not_found", {})
        return _result(ctx, entity_type, entity_id, found)

    def kb_browse(self, ctx: ActionContext) -> ActionResult:
        """List entries a page at a time, for choosing by keypad."""
        kind = ctx.args.get("type", "")
        parent = ctx.args.get("parent", "")
        page_text = ctx.args.get("page", "1")
        page = int(page_text) if page_text.isascii() and page_text.isdigit() else 1
        items = _browse_items(ctx.session, kind, parent, _today(ctx, self.tz))
        start = (max(page, 1) - 1) * PAGE
        chunk = items[start : start + PAGE]
        if not chunk:
            return ActionResult("empty", {"type": kind, "parent": parent})
        lang = "en" if ctx.language == "en" else "zh-CN"
        labels = [en if lang == "en" else zh for _ref, zh, en in chunk]
        refs = [ref for ref, _zh, _en in chunk]
        if len(items) > start + PAGE:
            labels.append(MORE[lang])
            refs.append(f"more:{kind}:{parent}:{page + 1}")
        return ActionResult(
            "list", {**spoken_menu(labels, refs, lang), "type": kind, "parent": parent}
        )


def _only_generic(query: str) -> bool:
    """Whether ``query`` names only a kind of thing ("医院", "I want a doctor")."""
    text = "".join(ch for ch in query.lower() if ch.isalnum() or ch == " ")
    for word in sorted(GENERIC_WORDS, key=len, reverse=True):
        if word.isascii():
            text = (
                " ".join(w for w in text.split() if w != word)
                if " " not in word
                else (text.replace(word, " "))
            )
        else:
            text = text.replace(word, "")
    return not text.replace(" ", "")


def _label(session: Session, hit: Hit, language: str) -> str:
    """A choice the caller can tell apart: departments and experts with their hospital."""
    name = hit.name_en if language == "en" else hit.name_zh
    if hit.type in ("department", "expert") and hit.hospital_id:
        hospital = session.get(Hospital, hit.hospital_id)
        if hospital is not None:
            where = hospital.name_en if language == "en" else short_name(hospital)
            return f"{name}, {where}" if language == "en" else f"{where}{name}"
    return name


def spoken_menu(choices: list[str], refs: list[str], language: str) -> dict[str, Any]:
    """Choices with their keys said aloud, and the references ``kb_answer`` resolves."""
    if language == "en":
        menu = "; ".join(f"for {c}, press {i}" for i, c in enumerate(choices, 1))
    else:
        menu = "；".join(f"{c}请按{i}" for i, c in enumerate(choices, 1))
    return {"choices": choices, "refs": ",".join(refs), "menu": menu}


def short_name(h: Hospital) -> str:
    """The name people use on the phone ("瑞金医院"), not the full official one."""
    spoken = [a for a in h.aliases if a.endswith(("医院", "中心", "保健院")) and len(a) >= 4]
    return min(spoken, key=len) if spoken else h.name_zh


def _browse_items(
    session: Session, kind: str, parent: str, today: date
) -> list[tuple[str, str, str]]:
    """(ref, label zh, label en) for one keypad list, in a stable order."""
    if kind == "hospital":
        rows = session.scalars(select(Hospital).order_by(Hospital.id))
        return [(f"hospital:{h.id}", short_name(h), h.name_en) for h in rows]
    if kind == "department":
        rows_d = session.scalars(
            select(Department).where(Department.hospital_id == parent).order_by(Department.id)
        )
        return [(f"department:{d.id}", d.name_zh, d.name_en) for d in rows_d]
    if kind == "expert":
        rows_e = session.scalars(
            select(Expert).where(Expert.department_id == parent).order_by(Expert.id)
        )
        return [(f"expert:{e.id}", f"{e.name_zh}{e.title_zh or ''}", e.name_en) for e in rows_e]
    if kind == "drug_category":
        seen: dict[str, str] = {}
        for zh, en in session.execute(
            select(Drug.category_zh, Drug.category_en).order_by(Drug.category_zh)
        ):
            if zh and zh not in seen and "," not in zh and ":" not in zh:
                seen[zh] = en or zh
        return [(f"drugcat:{zh}", zh, en) for zh, en in seen.items()]
    if kind == "drug":
        rows_g = session.scalars(select(Drug).where(Drug.category_zh == parent).order_by(Drug.id))
        return [(f"drug:{g.id}", g.generic_zh, g.generic_en) for g in rows_g]
    if kind == "article":
        rows_a = session.scalars(
            select(Article).where(Article.category == parent).order_by(Article.id)
        )
        return [
            (f"article:{a.id}", a.title_zh, a.title_en)
            for a in rows_a
            if readable_version(a, today) is not None
        ]
    return []
