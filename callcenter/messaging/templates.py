"""SMS texts: the ``sms:`` section of each language's prompt file, filled with params.

``ivr_flows/prompts/zh-CN.yaml`` and ``en.yaml`` hold every text residents hear or read; the
``sms.<name>`` entries are message templates with ``{name}`` placeholders. A template that
does not exist or a placeholder without a value raises :class:`TemplateError`; the dispatcher
then fails that one message with the reason (it is never retried: the same inputs would fail
again), and carries on with the others.
"""

from __future__ import annotations

import string
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


class TemplateError(Exception):
    """A message cannot be rendered: unknown template, missing param, bad prompt file."""


class Templates:
    """Renders ``sms.<template>`` for a language; prompt files are read once, on first use."""

    def __init__(self, flows_dir: Path) -> None:
        self.prompts_dir = Path(flows_dir) / "prompts"
        self._cache: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def _section(self, language: str) -> dict[str, str]:
        with self._lock:
            cached = self._cache.get(language)
            if cached is not None:
                return cached
            path = self.prompts_dir / f"{language}.yaml"
            if not path.is_file():
                raise TemplateError(f"no prompt file for language {language!r} ({path})")
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise TemplateError(f"{path}: cannot be read: {exc}") from None
            section = data.get("sms") if isinstance(data, dict) else None
            if not isinstance(section, dict):
                raise TemplateError(f"{path}: no sms: section")
            texts = {str(k): str(v) for k, v in section.items()}
            self._cache[language] = texts
            return texts

    def names(self, language: str) -> list[str]:
        """The template names defined for ``language``."""
        return sorted(self._section(language))

    def fields(self, template: str, language: str) -> list[str]:
        """The placeholders ``template`` needs, in order of appearance."""
        text = self._text(template, language)
        return [f for _lit, f, _spec, _conv in string.Formatter().parse(text) if f]

    def _text(self, template: str, language: str) -> str:
        text = self._section(language).get(template)
        if text is None:
            raise TemplateError(f"unknown SMS template sms.{template} ({language})")
        return text

    def render(self, template: str, language: str, params: Mapping[str, Any]) -> str:
        """The text of ``sms.<template>`` in ``language`` with ``params`` filled in.

        Values are inserted as text, never interpreted; params the template does not use are
        ignored.
        """
        text = self._text(template, language)
        out: list[str] = []
        try:
            pieces = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise TemplateError(f"sms.{template} ({language}) is malformed: {exc}") from None
        for literal, field, _spec, _conv in pieces:
            out.append(literal)
            if field is None:
                continue
            if field not in params or params[field] is None:
                raise TemplateError(f"sms.{template} ({language}) needs a value for {{{field}}}")
            out.append(str(params[field]))
        return "".join(out)
