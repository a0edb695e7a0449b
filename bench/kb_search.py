"""Knowledge-base search benchmark: 100,000 entries, a few thousand noisy spoken-style queries.

Generates a synthetic but realistic knowledge base (Chinese and English names built from
character pools: hospitals with short names, departments per hospital, experts, drugs with
brand names, health articles, service information), imports it with the real importer
(CSV files -> ``import_path``), and runs noisy queries of the kinds a speech recogniser and
a caller produce: exact names, aliases, homophones, wrong / missing / extra characters,
English (with typos), typed pinyin, filler words, 2-character abbreviations and
"hospital + department". Per database (SQLite and PostgreSQL) it prints build/import time,
p50/p99 latency per query, peak memory and top-1/top-3 accuracy per query class.

In the same run, the baseline: plain ``rapidfuzz.process.extractOne`` with ``WRatio`` over
all names (names, aliases, brands, keywords: about 3 per entry), no database. It costs
about 0.3 s per query at 100k entries, so it runs on a stratified sample of the queries
(``--baseline-queries``, spread over ``--baseline-workers`` processes; each query is timed
alone); our accuracy on that same sample is printed beside it.

Latencies are measured in steady state: after the import, garbage is collected and the
surviving objects are frozen out of the cyclic collector (``gc.freeze()``, what a long-running
server does after start-up), so a collection of the import's leftovers does not land on one
query; on PostgreSQL a CHECKPOINT first writes the import out.

    .venv/bin/python bench/kb_search.py [--entries 100000] [--queries 3000]
        [--baseline-queries 660] [--backends sqlite,postgresql] [--seed 7]
"""

from __future__ import annotations

import argparse
import csv
import gc
import multiprocessing
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pypinyin import lazy_pinyin
from rapidfuzz import fuzz, process, utils
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callcenter.clock import FakeClock  # noqa: E402
from callcenter.db.engine import Database, make_engine  # noqa: E402
from callcenter.db.migrate import upgrade  # noqa: E402
from knowledge_base.importer import FORMATS, VERSION_FIELDS, import_path, join_list  # noqa: E402
from knowledge_base.search import KnowledgeSearch  # noqa: E402
from knowledge_base.text import char_pinyin, fold, words  # noqa: E402

PG_URL = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

# --- pools -------------------------------------------------------------------------------

PLACES = words(
    "浦东 徐汇 静安 闵行 嘉定 宝山 松江 青浦 奉贤 金山 崇明 杨浦 虹口 普陀 "
    "长宁 黄浦 杭州 苏州 南京 无锡 宁波 嘉兴 湖州 绍兴 常州 南通 扬州 合肥 "
    "芜湖 温州 台州 舟山 昆山 太仓 江阴 宜兴 义乌 慈溪 余姚 海宁"
)
HOSPITAL_KINDS = (
    ("医院", "Hospital"),
    ("人民医院", "People's Hospital"),
    ("中医医院", "Hospital of Traditional Chinese Medicine"),
    ("妇幼保健院", "Maternal and Child Health Hospital"),
    ("儿童医院", "Children's Hospital"),
    ("中西医结合医院", "Hospital of Integrated Medicine"),
    ("第一人民医院", "First People's Hospital"),
    ("肿瘤医院", "Cancer Hospital"),
)
ROOT_CHARS = (
    "仁和安康博爱同济广惠民长青华明德瑞永福寿宁益泰恒信诚嘉禾"
    "协光新东南西北中天元兴盛昌隆丰茂清泉山川江河湖海"
)
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁"
    "任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂玉萍红玲芬燕彬鹏辉宇浩凯健俊帆帅旭宁欣怡悦佳琪晨婷"
    "雪颖慧琳瑶璐晓冬梅竹菊松柏森海波瀚文武斌志忠诚信义礼智仁德厚福康乐安泰宏振维亮哲鸣峰岚晴蕾薇婧倩茜"
    "嘉琦睿思远航天翔云飞扬子轩梓涵一诺若曦雨泽铭昊然"
)
DRUG_SYLLABLES = (
    ("阿", "a"),
    ("莫", "mo"),
    ("西", "ci"),
    ("林", "lin"),
    ("洛", "lo"),
    ("芬", "fen"),
    ("沙", "sa"),
    ("坦", "tan"),
    ("地", "di"),
    ("平", "pine"),
    ("他", "ta"),
    ("汀", "tin"),
    ("普", "pu"),
    ("利", "li"),
    ("唑", "zole"),
    ("拉", "la"),
    ("美", "me"),
    ("奥", "o"),
    ("头", "ce"),
    ("孢", "pha"),
    ("克", "c"),
    ("霉", "my"),
    ("素", "cin"),
    ("酮", "one"),
    ("胺", "amine"),
    ("尼", "ni"),
    ("替", "ti"),
    ("卡", "ca"),
    ("巴", "ba"),
    ("多", "do"),
    ("米", "mi"),
    ("诺", "no"),
    ("氟", "flu"),
    ("氯", "chlo"),
    ("苯", "ben"),
    ("罗", "ro"),
    ("格", "gli"),
    ("列", "le"),
    ("丙", "pro"),
    ("依", "e"),
    ("曲", "tri"),
    ("索", "so"),
    ("达", "da"),
    ("贝", "be"),
    ("特", "te"),
    ("韦", "vir"),
    ("舒", "su"),
    ("伐", "va"),
    ("哌", "pi"),
    ("嗪", "zine"),
    ("喹", "qui"),
    ("啶", "dine"),
    ("芦", "lu"),
    ("磺", "sul"),
    ("泊", "po"),
    ("维", "vi"),
    ("非", "fe"),
    ("萘", "naph"),
    ("德", "de"),
    ("瑞", "re"),
)
DRUG_FORMS = (
    ("片", "Tablets"),
    ("胶囊", "Capsules"),
    ("颗粒", "Granules"),
    ("注射液", "Injection"),
    ("缓释片", "Sustained-release Tablets"),
    ("肠溶片", "Enteric-coated Tablets"),
    ("口服液", "Oral Solution"),
    ("软膏", "Ointment"),
    ("滴眼液", "Eye Drops"),
    ("分散片", "Dispersible Tablets"),
)
BRAND_CHARS = "康泰诺欣宁舒达优立安力美佳乐得宝益适畅清通瑞捷倍同信维特克必妥复迪雅灵"
BODY = (
    ("胃", "stomach"),
    ("肠", "bowel"),
    ("肺", "lung"),
    ("肝", "liver"),
    ("肾", "kidney"),
    ("皮肤", "skin"),
    ("关节", "joint"),
    ("眼", "eye"),
    ("耳", "ear"),
    ("鼻", "nose"),
    ("咽", "throat"),
    ("心脏", "heart"),
    ("血管", "blood vessel"),
    ("骨", "bone"),
    ("颈椎", "neck spine"),
    ("腰椎", "lower back"),
    ("膝", "knee"),
    ("甲状腺", "thyroid"),
    ("乳腺", "breast"),
    ("前列腺", "prostate"),
    ("胆", "gallbladder"),
    ("胰腺", "pancreas"),
    ("口腔", "mouth"),
    ("牙", "tooth"),
    ("脑", "brain"),
    ("膀胱", "bladder"),
    ("子宫", "uterus"),
    ("卵巢", "ovary"),
    ("食管", "esophagus"),
    ("鼻窦", "sinus"),
)
CONDITIONS = (
    ("炎", "inflammation"),
    ("结石", "stones"),
    ("息肉", "polyps"),
    ("肿瘤", "tumours"),
    ("出血", "bleeding"),
    ("疼痛", "pain"),
    ("囊肿", "cysts"),
    ("感染", "infection"),
    ("损伤", "injury"),
    ("退变", "degeneration"),
    ("结节", "nodules"),
    ("功能减退", "weakness"),
)
ASPECTS = (
    ("的预防", "Preventing {}"),
    ("的饮食调理", "Diet for {}"),
    ("的日常护理", "Daily care for {}"),
    ("的早期信号", "Early signs of {}"),
    ("的用药须知", "Medicines for {}"),
    ("的康复训练", "Rehabilitation after {}"),
    ("的检查方法", "Tests for {}"),
    ("的常见误区", "Myths about {}"),
    ("怎么办", "What to do about {}"),
    ("的居家护理", "Home care for {}"),
    ("的急救处理", "First aid for {}"),
    ("的复诊提醒", "Follow-up visits for {}"),
    ("与运动", "Exercise with {}"),
    ("与睡眠", "Sleep and {}"),
    ("的手术前后", "Before and after surgery for {}"),
    ("的中医调养", "Traditional Chinese medicine for {}"),
    ("与妊娠", "Pregnancy and {}"),
    ("的儿童护理", "{} in children"),
    ("的老年护理", "{} in older people"),
    ("的心理调适", "Coping with {}"),
)
SERVICE_TOPICS = (
    ("预约挂号", "booking"),
    ("取消预约", "cancelling a booking"),
    ("医保报销", "insurance claims"),
    ("停车指南", "parking"),
    ("检验报告查询", "lab reports"),
    ("住院须知", "staying in hospital"),
    ("出院结算", "discharge billing"),
    ("病历复印", "copies of records"),
    ("疫苗接种", "vaccinations"),
    ("体检预约", "health checks"),
    ("家庭医生签约", "family doctors"),
    ("互联网门诊", "online clinics"),
    ("发票打印", "receipts"),
    ("陪护规定", "carers"),
    ("探视时间", "visiting hours"),
)
SERVICE_QUALIFIERS = (
    ("流程", "how it works"),
    ("须知", "what to know"),
    ("常见问题", "questions"),
    ("时间", "times"),
    ("地点", "where"),
    ("材料", "documents needed"),
    ("费用", "costs"),
    ("注意事项", "tips"),
    ("办理方式", "how to apply"),
    ("电话咨询", "by phone"),
    ("线上办理", "online"),
    ("老年人专窗", "for older people"),
    ("外地患者", "for visitors"),
    ("节假日安排", "on holidays"),
    ("儿童", "for children"),
    ("孕产妇", "for mothers"),
    ("夜间服务", "at night"),
    ("周末服务", "at weekends"),
    ("自助机", "kiosks"),
    ("绿色通道", "priority lane"),
)
ZH_PREFIX = ("请问", "我想问一下", "麻烦查一下", "你好，", "那个，", "嗯，", "帮我查查", "")
ZH_SUFFIX = {
    "drug": ("多少钱", "的价格是多少", "怎么吃", "是处方药吗", "一盒多少钱", ""),
    "hospital": ("在哪里", "的地址", "电话是多少", "几点开门", "怎么走", ""),
    "department": ("在几楼", "几点上班", "周六开吗", "在哪里", ""),
    "expert": ("医生哪天出诊", "主任什么时候坐诊", "医生", "的号", ""),
    "article": ("要注意什么", "是什么", ""),
    "service": ("怎么办", "是什么", ""),
}
EN_PREFIX = {
    "drug": ("how much is ", "price of ", "", ""),
    "hospital": ("where is ", "address of ", "", ""),
    "department": ("", ""),
    "expert": ("doctor ", "dr ", "", ""),
    "article": ("", "tell me about "),
    "service": ("", ""),
}
CLASSES = (
    "exact",
    "alias",
    "homophone",
    "wrong_char",
    "missing_char",
    "extra_char",
    "english",
    "pinyin",
    "filler",
    "two_char",
    "hospital_dept",
)


# --- the knowledge base ------------------------------------------------------------------


@dataclass
class KB:
    hospitals: list[dict[str, Any]]
    departments: list[dict[str, Any]]
    experts: list[dict[str, Any]]
    drugs: list[dict[str, Any]]
    articles: list[dict[str, Any]]
    services: list[dict[str, Any]]

    def by_type(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "hospital": self.hospitals,
            "department": self.departments,
            "expert": self.experts,
            "drug": self.drugs,
            "article": self.articles,
            "service": self.services,
        }

    def size(self) -> int:
        return sum(len(v) for v in self.by_type().values())


def _py(text_zh: str) -> str:
    return "".join(lazy_pinyin(text_zh))


def _title(py: str) -> str:
    return py[:1].upper() + py[1:]


def _sound(name: str) -> str:
    return "".join(char_pinyin(c) for c in fold(name).replace(" ", ""))


def _dept_templates() -> list[tuple[str, str, list[str]]]:
    import yaml

    data = yaml.safe_load((ROOT / "knowledge_base/demo/departments.yaml").read_text("utf-8"))
    seen: dict[str, tuple[str, str, list[str]]] = {}
    for dept in data["departments"]:
        seen.setdefault(dept["name_zh"], (dept["name_zh"], dept["name_en"], dept["aliases"]))
    return list(seen.values())


def generate(entries: int, rng: random.Random) -> KB:
    n_hosp = max(20, entries // 150)
    depts_per = 15
    n_art = min(int(entries * 0.08), len(BODY) * len(CONDITIONS) * len(ASPECTS))
    n_srv = min(len(SERVICE_TOPICS) * len(SERVICE_QUALIFIERS), max(10, int(entries * 0.003)))
    n_drug = int(entries * 0.25)
    n_exp = entries - n_hosp - n_hosp * depts_per - n_art - n_srv - n_drug

    hospitals: list[dict[str, Any]] = []
    roots: set[str] = set()
    sounds_taken: set[str] = set()
    while len(hospitals) < n_hosp:
        root = rng.choice(ROOT_CHARS) + rng.choice(ROOT_CHARS)
        if root[0] == root[1] or root in roots or _sound(root) in sounds_taken:
            continue
        roots.add(root)
        sounds_taken.add(_sound(root))
        place = rng.choice(PLACES)
        kind_zh, kind_en = rng.choice(HOSPITAL_KINDS)
        hid = f"h{len(hospitals):05d}"
        root_en = _title(_py(root))
        hospitals.append(
            {
                "id": hid,
                "name_zh": f"{place}{root}{kind_zh}",
                "name_en": f"{_title(_py(place))} {root_en} {kind_en}",
                "aliases": [root, f"{root}医院", f"{place}{root}", f"{root_en} Hospital"],
                "phone": f"+86 21 5550 {len(hospitals):04d}",
                "summary_zh": f"{root}医院（演示数据）。",
            }
        )
    templates = _dept_templates()
    departments: list[dict[str, Any]] = []
    for hosp in hospitals:
        for zh, en, aliases in rng.sample(templates, depts_per):
            departments.append(
                {
                    "id": f"{hosp['id']}-d{len(departments):06d}",
                    "hospital": hosp["id"],
                    "name_zh": zh,
                    "name_en": en,
                    "aliases": list(aliases),
                }
            )
    dept_by_hosp: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for dept in departments:
        dept_by_hosp[dept["hospital"]].append(dept)
    experts: list[dict[str, Any]] = []
    names: set[str] = set()
    while len(experts) < n_exp:
        given = rng.choice(GIVEN) if rng.random() < 0.2 else rng.choice(GIVEN) + rng.choice(GIVEN)
        name = rng.choice(SURNAMES) + given
        sound = _sound(name)
        if name in names or sound in sounds_taken:
            continue
        names.add(name)
        sounds_taken.add(sound)
        hosp = rng.choice(hospitals)
        dept = rng.choice(dept_by_hosp[hosp["id"]])
        syllables = lazy_pinyin(name)
        experts.append(
            {
                "id": f"e{len(experts):06d}",
                "name_zh": name,
                "name_en": f"{_title(syllables[0])} {_title(''.join(syllables[1:]))}",
                "title_zh": "主任医师",
                "hospital": hosp["id"],
                "department": dept["id"],
            }
        )
    drugs: list[dict[str, Any]] = []
    stems: set[str] = set()
    brands: set[str] = set()
    while len(drugs) < n_drug:
        parts = rng.sample(DRUG_SYLLABLES, rng.choice((3, 3, 4, 4, 5)))
        stem = "".join(p[0] for p in parts)
        if stem in stems or _sound(stem) in sounds_taken:
            continue
        stems.add(stem)
        sounds_taken.add(_sound(stem))
        form_zh, form_en = rng.choice(DRUG_FORMS)
        brand = "".join(rng.sample(BRAND_CHARS, rng.choice((2, 3, 3))))
        if brand in brands:
            continue
        brands.add(brand)
        stem_en = "".join(p[1] for p in parts)
        drugs.append(
            {
                "id": f"d{len(drugs):06d}",
                "generic_zh": f"{stem}{form_zh}",
                "generic_en": f"{_title(stem_en)} {form_en}",
                "brands_zh": [brand],
                "aliases": [stem, stem_en],
                "price": f"{rng.randint(100, 50000) / 100:.2f}",
                "currency": "CNY",
                "price_date": "2026-10-01",
                "otc": rng.random() < 0.4,
            }
        )
    topics = [(b + c, f"{ce} of the {be}") for b, be in BODY for c, ce in CONDITIONS]
    articles: list[dict[str, Any]] = []
    for topic_zh, topic_en in topics:
        for aspect_zh, aspect_en in ASPECTS:
            articles.append(
                {
                    "id": f"a{len(articles):06d}",
                    "category": "general",
                    "title_zh": f"{topic_zh}{aspect_zh}",
                    "title_en": aspect_en.format(topic_en),
                    "keywords": [],
                }
            )
    rng.shuffle(articles)
    articles = articles[:n_art]
    services = [
        {
            "id": f"s{i:05d}",
            "title_zh": f"{t_zh}{q_zh}",
            "title_en": f"{t_en.capitalize()}: {q_en}",
            "keywords": [],
            "body_zh": f"{t_zh}{q_zh}（演示）",
        }
        for i, ((t_zh, t_en), (q_zh, q_en)) in enumerate(
            (t, q) for t in SERVICE_TOPICS for q in SERVICE_QUALIFIERS
        )
    ][:n_srv]
    return KB(hospitals, departments, experts, drugs, articles, services)


def write_csv(kb: KB, folder: Path) -> None:
    etypes = kb.by_type()
    for etype, (_key, stem, fields) in FORMATS.items():
        with (folder / f"{stem}.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow([f.name for f in fields])
            for record in etypes[etype]:
                row = []
                for spec in fields:
                    value = record.get(spec.name)
                    if value is None:
                        row.append("")
                    elif spec.kind == "list":
                        row.append(join_list(value))
                    elif isinstance(value, bool):
                        row.append("true" if value else "false")
                    else:
                        row.append(str(value))
                writer.writerow(row)
    with (folder / "article_versions.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["article", *(f.name for f in VERSION_FIELDS)])
        for article in kb.articles:
            writer.writerow(
                [
                    article["id"],
                    1,
                    f"{article['title_zh']}（演示正文）",
                    "",
                    "",
                    "",
                    "审核人（演示）",
                    "2026-01-01",
                    "2027-12-31",
                ]
            )


# --- noisy queries -----------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    text: str
    etype: str
    expected: str
    cls: str


def _common_chars() -> dict[str, list[str]]:
    by_sound: dict[str, list[str]] = defaultdict(list)
    for b1 in range(0xB0, 0xD8):
        for b2 in range(0xA1, 0xFF):
            try:
                ch = bytes([b1, b2]).decode("gb2312")
            except UnicodeDecodeError:
                continue
            by_sound[char_pinyin(ch)].append(ch)
    return by_sound


def _name(entry: dict[str, Any], etype: str) -> str:
    return str(
        entry["generic_zh"] if etype == "drug" else entry.get("name_zh") or entry["title_zh"]
    )


def _name_en(entry: dict[str, Any], etype: str) -> str:
    return str(
        entry["generic_en"] if etype == "drug" else entry.get("name_en") or entry["title_en"]
    )


def make_queries(kb: KB, count: int, rng: random.Random) -> list[Query]:
    by_sound = _common_chars()
    all_chars = [c for chars in by_sound.values() for c in chars]
    etypes = kb.by_type()
    hospitals = {h["id"]: h for h in kb.hospitals}
    weights = {"expert": 3, "drug": 3, "hospital": 2, "department": 1, "article": 2, "service": 1}
    type_pool = [t for t, w in weights.items() for _ in range(w)]
    queries: list[Query] = []
    attempts = 0
    while len(queries) < count and attempts < count * 50:
        attempts += 1
        cls = CLASSES[len(queries) % len(CLASSES)]
        etype = "department" if cls == "hospital_dept" else rng.choice(type_pool)
        if cls == "two_char":
            etype = rng.choice(("hospital", "expert", "drug"))
        entry = rng.choice(etypes[etype])
        name = _name(entry, etype)
        q: str | None = None
        if cls == "exact":
            # A department's name alone ("心内科") is the same in every hospital: a
            # department is asked for with its hospital (class hospital_dept).
            if etype == "department":
                continue
            q = name
        elif cls == "alias":
            options = [a for a in entry.get("aliases", []) + entry.get("brands_zh", []) if a]
            if etype == "department":
                continue
            q = rng.choice(options) if options else None
        elif cls == "homophone":
            if etype == "department":
                continue
            positions = [i for i, c in enumerate(name) if len(by_sound[char_pinyin(c)]) > 1]
            if not positions:
                continue
            i = rng.choice(positions)
            alt = [c for c in by_sound[char_pinyin(name[i])] if c != name[i]]
            q = name[:i] + rng.choice(alt) + name[i + 1 :]
        elif cls == "wrong_char":
            if len(name) < 4 or etype == "department":
                continue
            i = rng.randrange(1, len(name))
            q = name[:i] + rng.choice(all_chars) + name[i + 1 :]
        elif cls == "missing_char":
            if len(name) < 4 or etype == "department":
                continue
            i = rng.randrange(len(name))
            q = name[:i] + name[i + 1 :]
        elif cls == "extra_char":
            if etype == "department":
                continue
            i = rng.randrange(len(name))
            q = name[: i + 1] + rng.choice((name[i], "的", rng.choice(all_chars))) + name[i + 1 :]
        elif cls == "english":
            if etype == "department":
                continue
            words = _name_en(entry, etype).lower().split()
            long_words = [k for k, w in enumerate(words) if len(w) >= 6]
            if long_words and rng.random() < 0.3:
                k = rng.choice(long_words)
                w = words[k]
                j = rng.randrange(1, len(w) - 1)
                words[k] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
            q = rng.choice(EN_PREFIX[etype]) + " ".join(words)
        elif cls == "pinyin":
            if etype == "department":
                continue
            syllables = lazy_pinyin(name)
            cut = rng.randrange(1, len(syllables)) if len(syllables) > 2 else len(syllables)
            q = "".join(syllables[:cut]) + " " + "".join(syllables[cut:])
        elif cls == "filler":
            if etype == "department":
                continue
            q = rng.choice(ZH_PREFIX) + name + rng.choice(ZH_SUFFIX[etype])
        elif cls == "two_char":
            if etype == "hospital":
                q = entry["aliases"][0]
            elif etype == "expert" and len(name) == 2:
                q = name
            elif etype == "drug":
                q = entry["brands_zh"][0] if len(entry["brands_zh"][0]) == 2 else None
        elif cls == "hospital_dept":
            hosp = hospitals[entry["hospital"]]
            dept_name = rng.choice(
                [entry["name_zh"], *[a for a in entry["aliases"] if not a.isascii()]]
            )
            q = rng.choice((hosp["aliases"][0], hosp["aliases"][1])) + dept_name
            q = rng.choice(("", "请问")) + q + rng.choice(ZH_SUFFIX["department"])
        if q:
            queries.append(Query(q, etype, entry["id"], cls))
    return queries


# --- running -----------------------------------------------------------------------------


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Outcome:
    latencies: list[float]
    top1: Counter[str]
    top3: Counter[str]
    total: Counter[str]
    ids: list[list[tuple[str, str]]]


def score(queries: list[Query], results: list[list[tuple[str, str]]]) -> Outcome:
    top1: Counter[str] = Counter()
    top3: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for q, ids in zip(queries, results, strict=True):
        total[q.cls] += 1
        want = (q.etype, q.expected)
        if ids[:1] == [want]:
            top1[q.cls] += 1
        if want in ids[:3]:
            top3[q.cls] += 1
    return Outcome([], top1, top3, total, results)


@contextmanager
def database(backend: str, workdir: Path) -> Iterator[Database]:
    if backend == "sqlite":
        engine = make_engine(f"sqlite:///{workdir / 'kb.db'}")
        upgrade(engine)
        db = Database(engine)
        yield db
        db.dispose()
        return
    name = f"kb_bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(PG_URL)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"CREATE DATABASE {name} LOCALE 'C.UTF-8' TEMPLATE template0"))
    engine = make_engine(PG_URL.rsplit("/", 1)[0] + "/" + name)
    try:
        upgrade(engine)
        db = Database(engine)
        yield db
        db.dispose()
    finally:
        engine.dispose()
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def run_backend(
    backend: str, folder: Path, workdir: Path, queries: list[Query]
) -> tuple[float, Outcome]:
    with database(backend, workdir) as db:
        started = time.perf_counter()
        import_path(db, folder, clock=FakeClock())
        build = time.perf_counter() - started
        if backend == "postgresql":
            # Let the server write the import out before timing searches (it would
            # otherwise do it during them, on the same 2 CPUs).
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("CHECKPOINT")
        search = KnowledgeSearch(db)
        # Steady state, as in a long-running server: the import's garbage collected, what
        # is left frozen out of the cyclic collector, caches warm.
        gc.collect()
        gc.freeze()
        for q in queries[:50]:
            search.search(q.text)
        latencies: list[float] = []
        results: list[list[tuple[str, str]]] = []
        for q in queries:
            t0 = time.perf_counter()
            result = search.search(q.text)
            latencies.append(time.perf_counter() - t0)
            results.append([(h.type, h.id) for h in result.hits[:3]])
        outcome = score(queries, results)
        outcome.latencies = latencies
        return build, outcome


_NAMES: list[str] = []
_OWNERS: list[tuple[str, str]] = []


def _baseline_one(text_: str) -> tuple[float, tuple[str, str] | None]:
    """One baseline query (runs in a worker process): timed extractOne over all names.

    The names were put through rapidfuzz's ``default_process`` once, beforehand; the query
    is processed here, inside the timing (the same result as passing
    ``processor=default_process``, without re-processing every name for every query).
    """
    t0 = time.perf_counter()
    best = process.extractOne(utils.default_process(text_), _NAMES, scorer=fuzz.WRatio)
    elapsed = time.perf_counter() - t0
    return elapsed, (_OWNERS[best[2]] if best is not None else None)


def run_baseline(kb: KB, queries: list[Query], workers: int) -> tuple[float, Outcome]:
    """Plain ``process.extractOne(query, all_names, scorer=WRatio)``; top-1 only.

    A name shared by several entries (every hospital's 心内科) is listed once, with its first
    entry: extractOne returns the first of equal scores, so the answers are the same as with
    the full list, sooner. Each query is timed on its own inside a worker process; the
    workers only let the sample finish sooner on a multi-core machine.
    """
    started = time.perf_counter()
    _NAMES.clear()
    _OWNERS.clear()
    seen: set[str] = set()
    for etype, entries in kb.by_type().items():
        for entry in entries:
            values = [_name(entry, etype), _name_en(entry, etype)]
            values += entry.get("aliases", []) + entry.get("brands_zh", [])
            values += entry.get("keywords", [])
            for value in values:
                name = utils.default_process(value)
                if name not in seen:  # the first owner is what extractOne would return
                    seen.add(name)
                    _NAMES.append(name)
                    _OWNERS.append((etype, entry["id"]))
    build = time.perf_counter() - started
    texts = [q.text for q in queries]
    gc.collect()
    gc.freeze()
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            answers = pool.map(_baseline_one, texts, chunksize=4)
    else:
        answers = [_baseline_one(t) for t in texts]
    outcome = score(queries, [[owner] if owner else [] for _elapsed, owner in answers])
    outcome.latencies = [elapsed for elapsed, _owner in answers]
    return build, outcome


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def stratified(queries: list[Query], count: int, rng: random.Random) -> list[Query]:
    by_cls: dict[str, list[Query]] = defaultdict(list)
    for q in queries:
        by_cls[q.cls].append(q)
    per = max(1, count // len(by_cls))
    sample: list[Query] = []
    for cls in CLASSES:
        items = by_cls.get(cls, [])
        sample.extend(rng.sample(items, min(per, len(items))))
    return sample


def frac(hits: Counter[str], total: Counter[str], cls: str) -> str:
    num = sum(hits.values()) if cls == "ALL" else hits[cls]
    den = sum(total.values()) if cls == "ALL" else total[cls]
    return f"{num / den:.3f}" if den else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument(
        "--baseline-queries", type=int, default=660, help="stratified sample (~0.3 s/query)"
    )
    parser.add_argument(
        "--baseline-workers", type=int, default=os.cpu_count() or 1, help="processes"
    )
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()
    rng = random.Random(args.seed)
    kb = generate(args.entries, rng)
    queries = make_queries(kb, args.queries, rng)
    sample = stratified(queries, args.baseline_queries, random.Random(args.seed + 1))
    counts = ", ".join(f"{t} {len(v):,}" for t, v in kb.by_type().items())
    per_class = ", ".join(f"{c} {n}" for c, n in Counter(q.cls for q in queries).items())
    print(f"knowledge base: {kb.size():,} entries ({counts})")
    print(f"generated in {time.perf_counter() - started:.1f} s; {len(queries):,} queries")
    print(f"  ({per_class})")
    print(f"CPUs: {os.cpu_count()}; Python {sys.version.split()[0]}")
    outcomes: dict[str, Outcome] = {}
    builds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="kb-bench-") as tmp:
        folder = Path(tmp) / "kb"
        folder.mkdir()
        t0 = time.perf_counter()
        write_csv(kb, folder)
        print(f"CSV files written in {time.perf_counter() - t0:.1f} s")
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            build, outcome = run_backend(backend, folder, Path(tmp), queries)
            builds[backend] = build
            outcomes[backend] = outcome
            lat = outcome.latencies
            print(
                f"{backend}: import {build:.1f} s; {len(lat)} queries: p50 {pct(lat, 0.5):.2f} ms,"
                f" p99 {pct(lat, 0.99):.2f} ms, max {max(lat) * 1000:.1f} ms;"
                f" peak RSS so far {peak_mb():.0f} MB",
                flush=True,
            )
    build, base = run_baseline(kb, sample, args.baseline_workers)
    print(
        f"baseline (extractOne, WRatio, {len(_NAMES):,} distinct names) on {len(sample)} sampled"
        " queries:"
        f" p50 {pct(base.latencies, 0.5):.1f} ms, p99 {pct(base.latencies, 0.99):.1f} ms"
    )
    print()
    index = {id(q): i for i, q in enumerate(queries)}
    rows = [index[id(q)] for q in sample]
    sampled = {b: score(sample, [o.ids[i] for i in rows]) for b, o in outcomes.items()}
    names = list(outcomes)
    head = f"{'class':14s} {'n':>5s}" + "".join(
        f" {b[:8] + ' top1':>13s} {'top3':>6s}" for b in names
    )
    head += f" | {'sample':>6s}" + "".join(f" {b[:8] + ' top1':>13s}" for b in names)
    head += f" {'baseline top1':>14s}"
    print("accuracy (all queries | the baseline's sample)")
    print(head)
    first = next(iter(outcomes.values()), base)
    for cls in [*CLASSES, "ALL"]:
        n = sum(first.total.values()) if cls == "ALL" else first.total[cls]
        line = f"{cls:14s} {n:5d}"
        for o in outcomes.values():
            line += f" {frac(o.top1, o.total, cls):>13s} {frac(o.top3, o.total, cls):>6s}"
        ns = sum(base.total.values()) if cls == "ALL" else base.total[cls]
        line += f" | {ns:6d}"
        for o in sampled.values():
            line += f" {frac(o.top1, o.total, cls):>13s}"
        line += f" {frac(base.top1, base.total, cls):>14s}"
        print(line)
    print()
    for backend, o in outcomes.items():
        lat = o.latencies
        print(
            f"{backend:10s} build/import {builds[backend]:6.1f} s   p50 {pct(lat, 0.5):6.2f} ms"
            f"   p99 {pct(lat, 0.99):6.2f} ms   mean {statistics.mean(lat) * 1000:6.2f} ms"
        )
    print(
        f"{'baseline':10s} build/import {build:6.1f} s   p50 {pct(base.latencies, 0.5):6.1f} ms"
        f"   p99 {pct(base.latencies, 0.99):6.1f} ms"
    )
    print(
        f"peak RSS of this process: {peak_mb():.0f} MB;"
        f" total run {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
