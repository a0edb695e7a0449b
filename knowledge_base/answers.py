"""Spoken answers: a knowledge-base entry said in a few sentences, in the caller's language.

Health content comes only from the readable (reviewed, unexpired) version of an article and
always ends with the "general information, not a diagnosis" line. Drug prices are read the
way people say them, with the date of the price and a reminder that the hospital's own
price applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import spoken
from .articles import latest_version, readable_version
from .models import Article, Department, Drug, Expert, Hospital, ServiceInfo

DISCLAIMER = {
    "zh-CN": "以上为一般健康知识，不能代替医生诊断；如有不适，请及时就医。",
    "en": "This is general health information, not a diagnosis. If you feel unwell, see a doctor.",
}
DRUG_ADVICE = {
    "zh-CN": "请遵医嘱或在药师指导下用药。",
    "en": "Take medicines as your doctor or pharmacist advises.",
}


@dataclass(frozen=True)
class Answer:
    """What is read to the caller, and which article version it came from (if any)."""

    text: str
    title: str
    article_id: str | None = None
    article_version: int | None = None
    sms_text: str | None = None


def _pick(zh: str | None, en: str | None, language: str) -> str:
    if language == "en":
        return (en or zh or "").strip()
    return (zh or en or "").strip()


def _sentence(text: str, language: str) -> str:
    text = text.strip()
    if not text:
        return ""
    end = "." if language == "en" else "。"
    return text if text[-1] in ".。!！?？" else text + end


def answer(
    session: Session, entity_type: str, entity_id: str, language: str, today: date
) -> Answer | None:
    """The spoken answer for one entry, or ``None`` (unknown id, or an expired article)."""
    lang = "en" if language == "en" else "zh-CN"
    if entity_type == "hospital":
        return _hospital(session.get(Hospital, entity_id), lang)
    if entity_type == "department":
        return _department(session, session.get(Department, entity_id), lang)
    if entity_type == "expert":
        return _expert(session, session.get(Expert, entity_id), lang)
    if entity_type == "drug":
        return _drug(session.get(Drug, entity_id), lang)
    if entity_type == "article":
        return _article(session.get(Article, entity_id), lang, today)
    if entity_type == "service":
        item = session.get(ServiceInfo, entity_id)
        if item is None:
            return None
        text = _pick(item.summary_zh or item.body_zh, item.summary_en or item.body_en, lang)
        return Answer(text=_sentence(text, lang), title=_pick(item.title_zh, item.title_en, lang))
    return None


def _hospital(h: Hospital | None, lang: str) -> Answer | None:
    if h is None:
        return None
    name = _pick(h.name_zh, h.name_en, lang)
    parts = [_sentence(_pick(h.summary_zh, h.summary_en, lang), lang)]
    if not parts[0]:
        address = _pick(h.address_zh, h.address_en, lang)
        parts = [_sentence(f"{name}, {address}" if lang == "en" else f"{name}位于{address}", lang)]
    hours = _pick(h.opening_hours_zh, h.opening_hours_en, lang)
    if hours and not _pick(h.summary_zh, h.summary_en, lang):
        # The spoken summary already gives the hours; otherwise they are read in full.
        parts.append(
            _sentence(f"Opening hours: {hours}" if lang == "en" else f"开放时间：{hours}", lang)
        )
    if h.phone:
        said = spoken.phone_digits(h.phone, lang)
        parts.append(_sentence(f"Phone: {said}" if lang == "en" else f"咨询电话：{said}", lang))
    return Answer(text="".join(p if lang != "en" else p + " " for p in parts).strip(), title=name)


def _department(session: Session, d: Department | None, lang: str) -> Answer | None:
    if d is None:
        return None
    hospital = session.get(Hospital, d.hospital_id)
    where = _pick(hospital.name_zh, hospital.name_en, lang) if hospital else ""
    name = _pick(d.name_zh, d.name_en, lang)
    location = _pick(d.location_zh, d.location_en, lang)
    hours = _pick(d.hours_zh, d.hours_en, lang)
    if lang == "en":
        text = f"{name} at {where}" + (f" is in {location}." if location else ".")
        if hours:
            text += f" Clinic hours: {_sentence(hours, lang)}"
        title = f"{name}, {where}"
    else:
        text = f"{where}{name}" + (f"位于{location}。" if location else "。")
        if hours:
            text += f"门诊时间：{_sentence(hours, lang)}"
        title = f"{where}{name}"
    return Answer(text=text, title=title)


def _expert(session: Session, e: Expert | None, lang: str) -> Answer | None:
    if e is None:
        return None
    hospital = session.get(Hospital, e.hospital_id)
    dept = session.get(Department, e.department_id) if e.department_id else None
    where = _pick(hospital.name_zh, hospital.name_en, lang) if hospital else ""
    dname = _pick(dept.name_zh, dept.name_en, lang) if dept else ""
    name = _pick(e.name_zh, e.name_en, lang)
    title = _pick(e.title_zh, e.title_en, lang)
    specialties = e.specialties_en if lang == "en" else e.specialties_zh
    sched = spoken.schedule(e.schedule or [], lang)
    if lang == "en":
        text = f"{name}, {title}, {dname}, {where}."
        if specialties:
            text += f" Specialties: {', '.join(specialties)}."
        if sched:
            text += f" Clinics: {sched}."
    else:
        text = f"{name}，{title}，{where}{dname}。"
        if specialties:
            text += f"擅长{'、'.join(specialties)}。"
        if sched:
            text += f"出诊时间：{sched}。"
    return Answer(text=text, title=name)


def _drug(d: Drug | None, lang: str) -> Answer | None:
    if d is None:
        return None
    name = _pick(d.generic_zh, d.generic_en, lang)
    unit = _pick(d.unit_zh, d.unit_en, lang)
    summary = _sentence(_pick(d.summary_zh, d.summary_en, lang), lang)
    parts: list[str] = []
    if summary:
        # The reviewed spoken summary names the drug and says what it is for.
        parts.append(summary)
    elif lang == "en":
        parts.append(f"{name}" + (f", {d.specification}" if d.specification else "") + ".")
        parts.append("Over the counter." if d.otc else "Prescription only.")
    else:
        parts.append(f"{name}" + (f"，规格{d.specification}" if d.specification else "") + "。")
        parts.append("非处方药。" if d.otc else "处方药，需凭医生处方购买。")
    if d.price is not None and lang == "en":
        when = f" (demo price of {d.price_date.isoformat()})" if d.price_date else ""
        parts.append(
            f"Reference price: {spoken.price_en(d.price)} per {unit or 'pack'}{when}; "
            "the hospital's own price applies."
        )
    elif d.price is not None:
        when = (
            f"（{d.price_date.year}年{d.price_date.month}月{d.price_date.day}日演示价格）"
            if d.price_date
            else ""
        )
        parts.append(
            f"参考价格每{unit or '盒'}{spoken.price_zh(d.price)}{when}，以医院实际价格为准。"
        )
    advice = DRUG_ADVICE[lang]
    if "遵医嘱" not in summary and "doctor" not in summary.lower():
        parts.append(advice)
    return Answer(text=(" " if lang == "en" else "").join(parts), title=name)


def _article(a: Article | None, lang: str, today: date) -> Answer | None:
    if a is None:
        return None
    version = readable_version(a, today)
    if version is None:
        return None
    title = _pick(a.title_zh, a.title_en, lang)
    summary = _pick(version.summary_zh, version.summary_en, lang)
    text = _sentence(summary, lang)
    text = f"{text} {DISCLAIMER[lang]}" if lang == "en" else f"{text}{DISCLAIMER[lang]}"
    return Answer(
        text=text,
        title=title,
        article_id=a.id,
        article_version=version.version,
        sms_text=_sentence(_pick(version.summary_zh, version.summary_en, lang), lang),
    )


def review_list(
    session: Session, today: date, within_days: int = 30
) -> list[tuple[str, int, date]]:
    """(article, version, expiry) of articles whose current version has expired or expires
    within ``within_days``, by article id (the short form of :func:`articles.review_list`)."""
    out: list[tuple[str, int, date]] = []
    for article in session.scalars(select(Article).order_by(Article.id)):
        newest = latest_version(article, today)
        if newest is not None and (newest.expires_on - today).days <= within_days:
            out.append((article.id, newest.version, newest.expires_on))
    return out
