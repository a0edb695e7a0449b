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
"""

from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from callcenter.calls.actions import ActionContext, ActionRegistry
from callcenter.db.models import CallEvent
from callcenter.ivr.engine import ActionResult

from .answers import Answer, answer
from .search import KnowledgeSearch

#: Below this score a match is not read out; the caller is offered a person instead.
MIN_CONFIDENCE = 0.6
MAX_CHOICES = 3


def _today(ctx: ActionContext, tz: ZoneInfo) -> date:
    return ctx.clock.now().astimezone(tz).date()


def _result(ctx: ActionContext, entity_type: str, entity_id: str, found: Answer) -> ActionResult:
    data: dict[str, Any] = {
        "answer": found.text,
        "title": found.title,
        "ref": f"{entity_type}:{entity_id}",
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

    def kb_search(self, ctx: ActionContext) -> ActionResult:
        """Search and answer, offer a choice, or report nothing found."""
        query = ctx.args.get("query", "").strip()
        if not query:
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
        if result.ambiguous and len(hits) >= 2:
            choices = [h.name_en if ctx.language == "en" else h.name_zh for h in hits]
            if ctx.language == "en":
                menu = "; ".join(f"for {c}, press {i}" for i, c in enumerate(choices, 1))
            else:
                menu = "；".join(f"{c}请按{i}" for i, c in enumerate(choices, 1))
            return ActionResult(
                "choose",
                {
                    "choices": choices,
                    "refs": ",".join(f"{h.type}:{h.id}" for h in hits),
                    "menu": menu,
                },
            )
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
        entity_type, _, entity_id = refs[int(pick) - 1].partition(":")
        found = answer(ctx.session, entity_type, entity_id, ctx.language, _today(ctx, self.tz))
        if found is None:
            return ActionResult("not_found", {})
        return _result(ctx, entity_type, entity_id, found)
