"""Booking by phone: whole calls through signed Twilio webhooks, by keypad and by voice.

The database holds the demo knowledge base and two weeks of demo clinics; the clock stands at
2026-11-26 09:00 Shanghai time (a Thursday). What is asserted is what the caller hears, what
the call leaves behind (a booking, an SMS in the outbox, attempt rows), and what it must not
leave behind: the visit password or the ID number in clear, anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import MetaData, select, update

from callcenter.booking.models import Booking, PinAttempt
from callcenter.booking.models import Slot as SlotRow
from callcenter.booking.ports import SlotQuery
from callcenter.booking.schedules import load_demo_schedules
from callcenter.booking.service import BookingRequest
from callcenter.bootstrap import Services
from callcenter.cli import main as cli_main
from callcenter.clock import FakeClock
from callcenter.db.engine import Database
from callcenter.db.models import OutboxMessage
from tests.conftest import TEST_ENV, TwilioSigner
from tests.knowledge_base.demo_db import LOAD_CLOCK_AT, copy_of, demo_database
from tests.knowledge_base.test_ivr import EN, ZH, Phone, pick

TZ = ZoneInfo("Asia/Shanghai")
CALLER = "+8613800138000"
#: A resident ID number whose check character is X (keyed as * on a phone).
ID_X = "11010519491231002X"
#: One that ends in a digit, so it can be said aloud.
ID_SAID = "310104198503120021"
ZH_DIGITS = dict(zip("零幺一二三四五六七八九", "01123456789", strict=True))


@pytest.fixture(scope="module")
def demo_clinics(database_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo knowledge base and two weeks of demo clinics, loaded once for the module."""
    with demo_database(database_template, tmp_path_factory.mktemp("booking")) as url:
        db = Database.from_url(url)
        try:
            load_demo_schedules(db, FakeClock(LOAD_CLOCK_AT), TZ)
        finally:
            db.dispose()
        yield url


@pytest.fixture
def database_url(demo_clinics: str, tmp_path: Path) -> Iterator[str]:
    """Each test books on its own copy."""
    with copy_of(demo_clinics, tmp_path) as url:
        yield url


@pytest.fixture
def phone(twilio: TwilioSigner) -> Phone:
    """A caller with a phone, the main menu heard."""
    call = Phone(twilio, CALLER)
    assert call.call() == [ZH["main"]["welcome"], ZH["main"]["menu"]]
    return call


def codes(heard: str) -> tuple[str, str]:
    """The visit number and password as the caller writes them down from what was said."""
    found = re.search("就诊号码(?:是)?：(.+?)。密码(?:是)?：(.+?)。", heard)
    if found is None:
        found = re.search(
            r"[Vv]isit number(?: is)?: (.+?)\. (?:Your )?[Pp]assword(?: is)?: (.+?)\.", heard
        )
    assert found is not None, heard

    def digits(spoken: str) -> str:
        return "".join(ZH_DIGITS.get(ch, ch) for ch in spoken if ch.isdigit() or ch in ZH_DIGITS)

    return digits(found.group(1)), digits(found.group(2))


def bookings(services: Services) -> list[Booking]:
    with services.db.sessions() as s:
        return list(s.scalars(select(Booking).order_by(Booking.id)))


def outbox(services: Services) -> list[OutboxMessage]:
    with services.db.sessions() as s:
        return list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def everything_stored(services: Services) -> str:
    """Every value in every table, as text: what someone with the database would see."""
    meta = MetaData()
    engine = services.db.engine
    meta.reflect(bind=engine)
    parts: list[str] = []
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(table.select()):
                parts.append(repr(tuple(row)))
    return "\n".join(parts)


def book_by_keypad(
    call: Phone, id_keys: str = "11010519491231002*", *, known: bool = False
) -> list[str]:
    """Main menu to the read-back, by keypad (the name by voice): Ruijin cardiology, any
    doctor, Friday 27 November, the first time offered."""
    assert call.press("2") == [ZH["booking"]["menu"]]
    assert call.press("1") == [ZH["booking"]["ask_place"]]
    hospitals = call.press("1")
    assert hospitals[0].startswith("请选择医院：")
    departments = pick(call, hospitals, "瑞金医院")
    assert departments[0].startswith("请选择科室：")
    doctors = pick(call, departments, "心内科")
    assert doctors[0].startswith("请选择医生：")
    dates = pick(call, doctors, "普通门诊，任意医生")
    # today's later clinics can still be booked; today is Thursday 26 November
    assert dates[0].startswith("请选择就诊日期：11月26日星期四请按1；11月27日星期五请按2")
    times = pick(call, dates, "11月27日星期五")
    assert times[0].startswith("请选择就诊时段：上午8点到9点请按1")
    assert call.press("1") == [ZH["booking"]["id_type"]]
    assert call.press("1") == [ZH["booking"]["ask_id"]]
    if known:
        assert call.press(id_keys) == ["就诊人：张*。正确请按1；重新输入证件号码请按2。"]
    else:
        assert call.press(id_keys) == [ZH["booking"]["ask_name"]]
        assert call.say("张三") == ["您说的姓名是：张三。正确请按1；重新说请按2。"]
    assert call.press("1") == [ZH["booking"]["contact_menu"]]
    return call.press("1")


# ---------------------------------------------------------------- a new booking


def test_keypad_booking_reads_codes_twice_and_texts_them(
    phone: Phone, services: Services, twilio: TwilioSigner
) -> None:
    (readback,) = book_by_keypad(phone)
    assert readback.startswith("您预约的是：瑞金医院心内科，普通门诊，11月27日星期五上午8点")
    assert "挂号费" in readback
    assert "就诊人：张三" in readback
    assert "短信发送到尾号八、零、零、零的手机。" in readback
    assert readback.endswith("确认预约请按1；重新选择请按2；放弃预约请按9。")

    heard = phone.press("1")
    assert heard[:2] == [ZH["booking"]["booking_now"], ZH["booking"]["booked"]]
    visit_number, password = codes(heard[2])
    assert re.fullmatch(r"\d{8}", visit_number)
    assert re.fullmatch(r"\d{6}", password)
    # read twice, slowly: digit by digit, 1 said as 幺, a pause after each group of four
    assert codes(heard[3]) == (visit_number, password)
    assert "、" in heard[2]
    assert "，" in heard[2]
    assert heard[4] == ZH["booking"]["after_codes"]

    # "* to repeat" says them again: the call kept them, sealed
    again = phone.press("*")
    assert codes(again[0]) == (visit_number, password)

    [booking] = bookings(services)
    assert (booking.visit_number, booking.status, booking.contact_phone) == (
        visit_number,
        "booked",
        CALLER,
    )
    [sms] = outbox(services)
    assert (sms.template, sms.to_e164, sms.essential, sms.channel) == (
        "booking_confirmed",
        CALLER,
        True,
        "sms",
    )
    assert sms.params["visit_number"] == visit_number
    assert "password" not in sms.params
    assert sms.sealed

    stored = everything_stored(services)
    assert password not in stored.replace(visit_number, "")
    assert ID_X not in stored
    assert ID_X.lower() not in stored


def test_replayed_webhook_says_the_same_codes(
    phone: Phone, services: Services, twilio: TwilioSigner
) -> None:
    book_by_keypad(phone)
    path = phone._next_path()
    token = {"I-Twilio-Idempotency-Token": "3f7e2a10-0000-4000-8000-00000000b00c"}
    params = {"CallSid": phone.sid, "Digits": "1"}
    first = phone._read(twilio.post(path, params, headers=token))
    second = phone._read(twilio.post(path, params, headers=token))
    assert first == second
    assert len(bookings(services)) == 1


def test_the_call_forgets_its_secrets_when_it_ends(
    phone: Phone, services: Services, twilio: TwilioSigner
) -> None:
    book_by_keypad(phone)
    heard = phone.press("1")
    _visit_number, password = codes(heard[2])
    twilio.post(
        "/twilio/voice/status",
        {"CallSid": phone.sid, "CallStatus": "completed", "CallDuration": "95"},
    )
    with services.db.engine.connect() as conn:
        state = conn.exec_driver_sql("SELECT state FROM call_sessions").scalar_one()
    assert "sealed" not in str(state)
    assert password not in everything_stored(services).replace(_visit_number, "")


def test_voice_booking_from_the_main_menu(phone: Phone, services: Services) -> None:
    doctors = phone.say("我想挂瑞金医院心内科的号")
    assert doctors[0].startswith("请选择医生：普通门诊，任意医生请按1")
    dates = phone.say("普通门诊")
    assert dates[0].startswith("请选择就诊日期：")
    times = phone.say("11月30日星期一")
    assert times[0].startswith("请选择就诊时段：上午8点到9点请按1")
    assert phone.say("按2") == [ZH["booking"]["id_type"]]
    assert phone.say("身份证") == [ZH["booking"]["ask_id"]]
    spoken_id = "".join("零幺二三四五六七八九"[int(d)] for d in ID_SAID)
    assert phone.say(spoken_id) == [ZH["booking"]["ask_name"]]
    assert phone.say("李明") == ["您说的姓名是：李明。正确请按1；重新说请按2。"]
    assert phone.say("对") == [ZH["booking"]["contact_menu"]]
    (readback,) = phone.say("这个号码")
    assert "11月30日星期一上午9点" in readback
    heard = phone.say("确认")
    visit_number, _password = codes(heard[2])
    [booking] = bookings(services)
    assert booking.visit_number == visit_number
    assert booking.visit_date == date(2026, 11, 30)


def test_english_booking_by_voice(twilio: TwilioSigner, services: Services) -> None:
    call = Phone(twilio, CALLER)
    call.call()
    assert call.press("9") == [EN["main"]["menu"]]
    doctors = call.say("I'd like to book an appointment at Ruijin Hospital cardiology")
    assert doctors[0].startswith("Which doctor? for any doctor, press 1")
    assert call.say("any doctor")[0].startswith("Which day? for Thursday 26 November, press 1")
    assert call.say("Friday 27 November")[0].startswith("Which time? for 8:00 am to 9:00 am")
    call.press("1")
    call.press("1")
    assert call.press(ID_SAID) == [EN["booking"]["ask_name"]]
    assert call.say("Li Ming") == [
        "We heard: Li Ming. If that is right, press 1. To say it again, press 2."
    ]
    call.say("yes")
    (readback,) = call.press("1")
    assert readback.startswith("You are booking any doctor, Cardiology, Ruijin Hospital")
    heard = call.press("1")
    assert heard[1] == EN["booking"]["booked"]
    visit_number, password = codes(heard[2])
    assert len(visit_number) == 8
    assert len(password) == 6
    [sms] = outbox(services)
    assert (sms.template, sms.language) == ("booking_confirmed", "en")


def test_a_known_patient_is_not_asked_for_a_name_again(
    twilio: TwilioSigner, services: Services
) -> None:
    first = Phone(twilio, CALLER)
    first.call()
    book_by_keypad(first)
    first.press("1")
    second = Phone(twilio, "+8613900139000")
    second.call()
    second.press("2")
    second.press("1")
    hospitals = second.press("1")
    departments = pick(second, hospitals, "瑞金医院")
    doctors = pick(second, departments, "心内科")
    dates = pick(second, doctors, "普通门诊，任意医生")
    pick(second, dates, "11月30日星期一")
    second.press("1")
    second.press("1")
    assert second.press("11010519491231002*") == ["就诊人：张*。正确请按1；重新输入证件号码请按2。"]
    assert second.press("1") == [ZH["booking"]["contact_menu"]]
    (readback,) = second.press("1")
    assert "就诊人：张*" in readback
    heard = second.press("1")
    assert heard[1] == ZH["booking"]["booked"]
    patients = {b.patient_id for b in bookings(services)}
    assert len(patients) == 1


def test_a_rule_refusal_is_explained(phone: Phone, services: Services) -> None:
    # one booking per patient per day: the same patient, the same day, another slot
    book_by_keypad(phone)
    phone.press("1")
    call = Phone(phone.twilio, CALLER)
    call.call()
    (readback,) = book_by_keypad(call, known=True)
    assert readback.startswith("您预约的是：瑞金医院心内科")
    heard = call.press("1")
    assert heard[0] == ZH["booking"]["booking_now"]
    assert "每" in heard[1] or "已" in heard[1], heard
    assert heard[2] == ZH["booking"]["after_refused"]
    assert len(bookings(services)) == 1


def test_slot_taken_while_the_caller_confirms(phone: Phone, services: Services) -> None:
    book_by_keypad(phone)
    with services.db.transaction() as s:
        s.execute(update(SlotRow).values(booked=SlotRow.capacity))
    heard = phone.press("1")
    assert ZH["booking"]["slot_gone"] in heard
    assert bookings(services) == []


def test_passport_holders_reach_the_booking_desk(phone: Phone) -> None:
    phone.say("我想挂瑞金医院心内科的号")
    phone.press("1")
    phone.press("1")
    phone.press("1")
    assert phone.press("2") == [ZH["booking"]["passport"]]
    assert phone.queue == "booking-zh-CN"


def test_an_invalid_id_number_is_asked_again(phone: Phone) -> None:
    phone.say("我想挂瑞金医院心内科的号")
    for key in ("1", "1", "1", "1"):
        phone.press(key)
    # one digit wrong: the check character no longer matches
    assert phone.press("11010519491231003*") == [
        ZH["system"]["invalid"],
        ZH["booking"]["ask_id"],
    ]


# ---------------------------------------------------------------- an existing booking


def _booked(services: Services, day: date = date(2026, 11, 30)) -> tuple[str, str]:
    """A booking made by an operator for the caller (the visit number and password)."""
    assert services.booking is not None
    with services.db.transaction() as s:
        query = SlotQuery("ruijin", "ruijin-cardiology", day, day, any_doctor=False)
        slot = services.booking.backend.find_slots(s, query)[0]
    receipt = services.booking.book(
        BookingRequest(
            slot_id=slot.id,
            name="王芳",
            id_type="cn_id",
            id_number=ID_SAID,
            contact_phone=CALLER,
            channel="operator",
            created_by="agent-demo",
        )
    )
    return receipt.visit_number, receipt.password


def manage(call: Phone, visit_number: str, password: str) -> list[str]:
    assert call.press("2") == [ZH["booking"]["menu"]]
    assert call.press("2") == [ZH["booking"]["ask_visit_number"]]
    assert call.press(visit_number) == [ZH["booking"]["ask_password"]]
    return call.press(password)


def test_check_and_cancel_a_booking(phone: Phone, services: Services) -> None:
    visit_number, password = _booked(services)
    (summary,) = manage(phone, visit_number, password)
    assert summary.startswith("您的预约：")
    assert "瑞金医院" in summary
    assert "心内科" in summary
    assert summary.endswith("取消这个预约请按1；重发预约短信请按2；返回主菜单请按9。")
    (confirm,) = phone.press("1")
    assert confirm.startswith("确认取消")
    assert confirm.endswith("请按1；不取消请按2。")
    assert phone.press("1") == [ZH["booking"]["cancelled"], ZH["booking"]["after_manage"]]
    [booking] = bookings(services)
    assert booking.status == "cancelled"
    templates = [m.template for m in outbox(services)]
    assert templates == ["booking_confirmed", "booking_cancelled"]


def test_visit_number_and_password_said_aloud(phone: Phone, services: Services) -> None:
    visit_number, password = _booked(services)
    phone.press("2")
    phone.press("2")
    said = "，".join("零幺二三四五六七八九"[int(d)] for d in visit_number)
    assert phone.say(said) == [ZH["booking"]["ask_password"]]
    (summary,) = phone.say(" ".join("零幺二三四五六七八九"[int(d)] for d in password))
    assert summary.startswith("您的预约：")


def test_resend_the_booking_sms(phone: Phone, services: Services) -> None:
    visit_number, password = _booked(services)
    manage(phone, visit_number, password)
    assert phone.press("2") == [ZH["booking"]["resent"], ZH["booking"]["after_manage"]]
    resent = outbox(services)[-1]
    assert (resent.template, resent.to_e164) == ("booking_confirmed", CALLER)
    assert resent.sealed
    assert "password" not in resent.params


def test_wrong_passwords_hand_the_caller_to_a_person(phone: Phone, services: Services) -> None:
    visit_number, password = _booked(services)
    wrong = "000000" if password != "000000" else "111111"
    heard = manage(phone, visit_number, wrong)
    assert heard == ["就诊号码或密码不正确。您还可以再试2次。", ZH["booking"]["ask_visit_number"]]
    phone.press(visit_number)
    assert phone.press(wrong)[0] == "就诊号码或密码不正确。您还可以再试1次。"
    phone.press(visit_number)
    assert phone.press(wrong) == [ZH["booking"]["locked"]]
    assert phone.queue == "booking-zh-CN"
    with services.db.sessions() as s:
        attempts = list(s.scalars(select(PinAttempt.success).order_by(PinAttempt.id)))
    # the operator's booking checked nothing; the three tries of this call are all recorded
    assert attempts[-3:] == [False, False, False]
    assert password not in everything_stored(services).replace(visit_number, "")


# ---------------------------------------------------------------- the terminal simulator


def test_booking_in_the_simulator_script(
    services: Services, config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "booking.txt"
    script.write_text(
        "\n".join(
            [
                "我想挂瑞金医院心内科的号",
                "1",
                "1",
                "1",
                "1",
                "11010519491231002*",
                "张三",
                "1",
                "1",
                "1",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        "database:\n"
        f"  url: {config.database_url}\n"
        "ivr:\n"
        f"  flows_dir: {config.flows_dir}\n"
        "instance:\n"
        f"  data_dir: {tmp_path}\n",
        encoding="utf-8",
    )
    for key, value in TEST_ENV.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(
        cli_main, ["--config", str(config_file), "call", "--script", str(script)]
    )
    assert result.exit_code == 0, result.output
    assert "预约成功。" in result.output
    assert re.search(r"您的就诊号码是：[零幺二三四五六七八九、，]+。", result.output)
    assert len(bookings(services)) == 1
