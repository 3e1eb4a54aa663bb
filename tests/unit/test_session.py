"""Playbooks for the sans-I/O charger session: frames in, frames out."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest

from adapters.base import Context, OutCall, Refuse, Side
from adapters.passthrough import PassThrough
from adapters.registry import translator_for
from gateway.ocppj import Call, ErrorKind, Version
from gateway.records import FrameRecord
from gateway.session import (
    CancelTimer,
    ChargerSession,
    Problem,
    RoundTrip,
    SaveState,
    Send,
    SessionLimits,
    StartTimer,
    ValidationFailed,
)

BOOT16 = {"chargePointVendor": "ACME", "chargePointModel": "One"}
BOOT16_CONF = {"status": "Accepted", "currentTime": "2026-01-01T00:00:00Z", "interval": 300}


def make(version: Version = Version.V16, translator: Any = None, **limits: Any) -> ChargerSession:
    ids = itertools.count(1)
    ctx = Context("CP1", version, version, new_uuid=lambda: f"gw-{next(ids)}")
    session = ChargerSession("CP1", translator or PassThrough(version), ctx, SessionLimits(**limits))
    session.link_up(Side.CSMS, 0.0)
    return session


def sent(actions: list[Any], to: Side | None = None) -> list[list[Any]]:
    return [orjson.loads(a.text) for a in actions if isinstance(a, Send) and (to is None or a.to is to)]


def frame(*parts: Any) -> str:
    return orjson.dumps(list(parts)).decode()


def test_charger_call_is_forwarded_byte_for_byte_and_the_answer_comes_back() -> None:
    """Pass-through sends the charger's frame upstream unchanged and the CSMS's answer back unchanged."""
    s = make()
    text = frame(2, "u1", "BootNotification", BOOT16)
    out = s.receive(Side.CHARGER, text, 1.0)
    assert [a.text for a in out if isinstance(a, Send)] == [text]
    answer = frame(3, "u1", BOOT16_CONF)
    out = s.receive(Side.CSMS, answer, 1.5)
    assert [(a.to, a.text) for a in out if isinstance(a, Send)] == [(Side.CHARGER, answer)]
    rt = [a for a in out if isinstance(a, RoundTrip)]
    assert rt and rt[0].seconds == pytest.approx(0.5) and rt[0].outcome == "result"


def test_every_frame_is_logged_on_both_sides() -> None:
    """A relayed exchange leaves four log records: in from charger, out to CSMS, in from CSMS, out to charger."""
    s = make()
    out = s.receive(Side.CHARGER, frame(2, "u1", "Heartbeat", {}), 1.0)
    out += s.receive(Side.CSMS, frame(3, "u1", {"currentTime": "2026-01-01T00:00:00Z"}), 1.1)
    recs = [(r.direction, r.peer, r.message_type, r.action) for r in out if isinstance(r, FrameRecord)]
    assert recs == [
        ("in", "charger", "CALL", "Heartbeat"),
        ("out", "csms", "CALL", "Heartbeat"),
        ("in", "csms", "CALLRESULT", "Heartbeat"),
        ("out", "charger", "CALLRESULT", "Heartbeat"),
    ]


@pytest.mark.parametrize(
    ("version", "payload", "code"),
    [
        (Version.V16, {"chargePointVendor": "ACME"}, "OccurenceConstraintViolation"),
        (Version.V201, {"reason": "PowerUp"}, "OccurrenceConstraintViolation"),
        (Version.V16, {"chargePointVendor": "A" * 21, "chargePointModel": "x"}, "PropertyConstraintViolation"),
        (Version.V16, {"chargePointVendor": 5, "chargePointModel": "x"}, "TypeConstraintViolation"),
        (Version.V16, {**BOOT16, "extra": 1}, "FormationViolation"),
        (Version.V201, {"reason": "PowerUp", "chargingStation": {"model": "m", "vendorName": "v"}, "x": 1},
         "FormatViolation"),
        (Version.V21, {"reason": "Nope", "chargingStation": {"model": "m", "vendorName": "v"}},
         "PropertyConstraintViolation"),
    ],
)
def test_invalid_call_gets_the_senders_callerror_and_is_not_forwarded(
    version: Version, payload: dict[str, Any], code: str
) -> None:
    """A CALL that breaks its schema is answered in the sender's version's spelling and goes nowhere else."""
    s = make(version)
    out = s.receive(Side.CHARGER, frame(2, "u9", "BootNotification", payload), 1.0)
    assert sent(out, Side.CSMS) == []
    [err] = sent(out, Side.CHARGER)
    assert err[:3] == [4, "u9", code]
    assert any(isinstance(a, ValidationFailed) for a in out)


@pytest.mark.parametrize(
    ("version", "text", "uid", "code"),
    [
        (Version.V16, "[2, \"u1\", \"Heartbeat\", {", "-1", "FormationViolation"),
        (Version.V201, "not json at all", "-1", "FormatViolation"),
        (Version.V201, "{\"a\": 1}", "-1", "RpcFrameworkError"),
        (Version.V201, "[7, \"u2\", \"Heartbeat\", {}]", "u2", "MessageTypeNotSupported"),
        (Version.V16, "[6, \"u2\", \"Heartbeat\", {}]", "u2", "ProtocolError"),
        (Version.V16, "[2, \"u3\", \"Heartbeat\"]", "u3", "FormationViolation"),
        (Version.V16, "[2, \"u4\", \"NoSuchAction\", {}]", "u4", "NotImplemented"),
        (Version.V201, "[2, \"u5\", \"StartTransaction\", {}]", "u5", "NotImplemented"),
    ],
)
def test_malformed_frames_get_a_callerror_and_the_session_carries_on(
    version: Version, text: str, uid: str, code: str
) -> None:
    """Broken JSON, wrong message types and unknown actions are answered, not forwarded, and not fatal."""
    s = make(version)
    out = s.receive(Side.CHARGER, text, 1.0)
    assert sent(out, Side.CSMS) == []
    [err] = sent(out, Side.CHARGER)
    assert err[0] == 4 and err[1] == uid and err[2] == code
    out = s.receive(Side.CHARGER, frame(2, "ok", "Heartbeat", {}), 2.0)
    assert sent(out, Side.CSMS) == [[2, "ok", "Heartbeat", {}]]


def test_oversized_frame_is_refused_with_its_unique_id() -> None:
    """A frame over max_frame_bytes is answered with a format CALLERROR carrying the frame's own id."""
    s = make(max_frame_bytes=2000)
    big = frame(2, "big1", "DataTransfer", {"vendorId": "x", "data": "y" * 5000})
    out = s.receive(Side.CHARGER, big, 1.0)
    [err] = sent(out, Side.CHARGER)
    assert err[:3] == [4, "big1", "FormationViolation"]
    assert sent(out, Side.CSMS) == []


def test_second_call_waits_for_the_first_answer() -> None:
    """A charger that sends two CALLs at once gets them relayed one at a time, in order."""
    s = make()
    out1 = s.receive(Side.CHARGER, frame(2, "a", "Heartbeat", {}), 1.0)
    out2 = s.receive(Side.CHARGER, frame(2, "b", "Heartbeat", {}), 1.0)
    assert [m[1] for m in sent(out1, Side.CSMS)] == ["a"]
    assert sent(out2, Side.CSMS) == []
    out3 = s.receive(Side.CSMS, frame(3, "a", {"currentTime": "2026-01-01T00:00:00Z"}), 1.2)
    assert [m[1] for m in sent(out3, Side.CHARGER)] == ["a"]
    assert [m[1] for m in sent(out3, Side.CSMS)] == ["b"]


def test_duplicate_unique_id_of_a_pending_call_is_refused() -> None:
    """Reusing the id of a CALL still waiting for its answer gets a CALLERROR, not a second relay."""
    s = make(Version.V201)
    s.receive(Side.CHARGER, frame(2, "dup", "Heartbeat", {}), 1.0)
    out = s.receive(Side.CHARGER, frame(2, "dup", "Heartbeat", {}), 1.1)
    [err] = sent(out, Side.CHARGER)
    assert err[:3] == [4, "dup", "RpcFrameworkError"]
    assert sent(out, Side.CSMS) == []


def test_csms_silence_becomes_a_callerror_for_the_charger_after_the_timeout() -> None:
    """When the CSMS does not answer within call_timeout, the charger gets an InternalError in its version."""
    s = make(Version.V16, call_timeout=5)
    out = s.receive(Side.CHARGER, frame(2, "t1", "Heartbeat", {}), 1.0)
    [timer] = [a for a in out if isinstance(a, StartTimer)]
    assert timer.delay == 5
    out = s.timer_fired(timer.key, 6.0)
    [err] = sent(out, Side.CHARGER)
    assert err[:3] == [4, "t1", "InternalError"]
    assert any(isinstance(a, Problem) and a.event == "call_timeout" for a in out)
    late = s.receive(Side.CSMS, frame(3, "t1", {"currentTime": "2026-01-01T00:00:00Z"}), 7.0)
    assert sent(late) == []
    assert any(isinstance(a, Problem) and a.event == "unmatched_answer" for a in late)


def test_calls_wait_while_the_csms_is_down_and_go_out_when_it_is_back() -> None:
    """A CALL arriving before the upstream link is up is sent as soon as it comes up."""
    ids = itertools.count(1)
    ctx = Context("CP1", Version.V16, Version.V16, new_uuid=lambda: f"gw-{next(ids)}")
    s = ChargerSession("CP1", PassThrough(Version.V16), ctx)
    out = s.receive(Side.CHARGER, frame(2, "b1", "BootNotification", BOOT16), 1.0)
    assert sent(out, Side.CSMS) == []
    out = s.link_up(Side.CSMS, 2.0)
    assert sent(out, Side.CSMS) == [[2, "b1", "BootNotification", BOOT16]]


def test_link_loss_fails_the_call_in_flight() -> None:
    """If the CSMS connection drops with a CALL in flight, the charger gets a CALLERROR at once."""
    s = make(Version.V201)
    s.receive(Side.CHARGER, frame(2, "x", "Heartbeat", {}), 1.0)
    out = s.link_down(Side.CSMS, 1.5)
    [err] = sent(out, Side.CHARGER)
    assert err[:3] == [4, "x", "InternalError"]
    assert any(isinstance(a, CancelTimer) for a in out)


def test_csms_callerror_is_relayed_to_the_charger() -> None:
    """A CALLERROR from the CSMS reaches the charger with the same code (same version)."""
    s = make(Version.V201)
    s.receive(Side.CHARGER, frame(2, "e1", "Heartbeat", {}), 1.0)
    out = s.receive(Side.CSMS, frame(4, "e1", "SecurityError", "nope", {}), 1.1)
    [err] = sent(out, Side.CHARGER)
    assert err[:4] == [4, "e1", "SecurityError", "nope"]


def test_csms_initiated_call_is_relayed_to_the_charger() -> None:
    """A CALL from the CSMS goes to the charger and the charger's answer goes back to the CSMS."""
    s = make(Version.V16)
    out = s.receive(Side.CSMS, frame(2, "c1", "Reset", {"type": "Soft"}), 1.0)
    assert sent(out, Side.CHARGER) == [[2, "c1", "Reset", {"type": "Soft"}]]
    out = s.receive(Side.CHARGER, frame(3, "c1", {"status": "Accepted"}), 1.1)
    assert sent(out, Side.CSMS) == [[3, "c1", {"status": "Accepted"}]]


def test_invalid_response_from_the_csms_is_not_relayed() -> None:
    """A CALLRESULT that breaks its schema turns into a CALLERROR for the charger."""
    s = make(Version.V16)
    s.receive(Side.CHARGER, frame(2, "r1", "BootNotification", BOOT16), 1.0)
    out = s.receive(Side.CSMS, frame(3, "r1", {"status": "Maybe"}), 1.1)
    [err] = sent(out, Side.CHARGER)
    assert err[0] == 4 and err[1] == "r1"
    assert any(isinstance(a, ValidationFailed) and a.side is Side.CSMS for a in out)


class _Fanout:
    """A toy translator: each Heartbeat becomes two upstream calls and saves state."""

    name = "fanout"
    charger_version = Version.V16
    csms_version = Version.V16

    def handle_call(self, origin: Side, call: Call, ctx: Context) -> Any:
        if call.action == "DataTransfer":
            raise Refuse(ErrorKind.NOT_SUPPORTED, "no data transfer here")
        first = yield OutCall(Side.CSMS, "Heartbeat", {})
        yield OutCall(Side.CSMS, "Heartbeat", {})
        ctx.namespace("toy")["beats"] = ctx.namespace("toy").get("beats", 0) + 1
        ctx.save()
        return first

    def coverage(self) -> list[Any]:
        return []


def test_fan_out_keeps_one_outstanding_call_and_persists_state() -> None:
    """A translator's sub-calls go out one after another, and changed state is saved."""
    s = make(translator=_Fanout())
    out = s.receive(Side.CHARGER, frame(2, "h", "Heartbeat", {}), 1.0)
    [first] = sent(out, Side.CSMS)
    out = s.receive(Side.CSMS, frame(3, first[1], {"currentTime": "2026-01-01T00:00:00Z"}), 1.1)
    [second] = sent(out, Side.CSMS)
    assert second[1] != first[1]
    out = s.receive(Side.CSMS, frame(3, second[1], {"currentTime": "2026-01-01T00:00:01Z"}), 1.2)
    assert sent(out, Side.CHARGER) == [[3, "h", {"currentTime": "2026-01-01T00:00:00Z"}]]
    saves = [a for a in out if isinstance(a, SaveState)]
    assert saves and saves[-1].state == {"toy": {"beats": 1}}


def test_refusal_by_the_translator_is_a_callerror_in_the_senders_version() -> None:
    """A message the translator cannot carry gets NotSupported in the sender's version and is not forwarded."""
    s = make(translator=_Fanout())
    out = s.receive(Side.CHARGER, frame(2, "d", "DataTransfer", {"vendorId": "x"}), 1.0)
    assert sent(out, Side.CSMS) == []
    [err] = sent(out, Side.CHARGER)
    assert err[:3] == [4, "d", "NotSupported"]


def test_send_frames_of_2_1_pass_through_without_an_answer() -> None:
    """A 2.1 SEND (message type 6) is relayed as a SEND and nothing is answered or awaited."""
    s = make(Version.V21)
    payload = {"id": 1, "pending": 0, "basetime": "2026-01-01T00:00:00Z", "data": [{"t": 0, "v": "1"}]}
    out = s.receive(Side.CHARGER, frame(6, "s1", "NotifyPeriodicEventStream", payload), 1.0)
    assert sent(out, Side.CSMS) == [[6, "s1", "NotifyPeriodicEventStream", payload]]
    assert sent(out, Side.CHARGER) == []
    assert s.pending(Side.CSMS) == 0
    out = s.receive(Side.CHARGER, frame(2, "h", "Heartbeat", {}), 1.1)
    assert sent(out, Side.CSMS) == [[2, "h", "Heartbeat", {}]]


def test_validation_never_changes_the_payload() -> None:
    """Schema defaults (e.g. TransactionEvent offline=false) are not written into the frame being checked."""
    from gateway import schemas

    payload = {"eventType": "Started", "timestamp": "2026-01-01T00:00:00Z", "triggerReason": "Authorized",
               "seqNo": 0, "transactionInfo": {"transactionId": "t1"}}
    before = orjson.dumps(payload)
    assert schemas.validate(Version.V201, "TransactionEvent", payload) is None
    assert orjson.dumps(payload) == before


def test_random_uuid_is_a_well_formed_version_4_uuid_and_never_repeats() -> None:
    """Message ids from random_uuid parse as RFC 4122 version-4 UUIDs and 10,000 of them are distinct."""
    import uuid

    from adapters.base import random_uuid

    ids = [random_uuid() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:300]:  # across more than one draw of entropy
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


# ------------------------------------------------------------ a translator's deferred messages (Defer)

V16, V201 = Version.V16, Version.V201
TOKEN = {"idToken": "04A2B3C4D5", "type": "ISO14443"}


def station_to_16(csms_up: bool, station: Version = V201) -> ChargerSession:
    """A 2.0.1 (or 2.1) station behind the gateway and a 1.6 CSMS, the link to the CSMS up or not yet."""
    ids = itertools.count(1)
    ctx = Context("CS1", station, V16, new_uuid=lambda: f"gw-{next(ids)}")
    translator = translator_for(station, V16)
    assert translator is not None
    session = ChargerSession("CS1", translator, ctx, SessionLimits(call_timeout=5.0, retry_interval=30.0))
    if csms_up:
        session.link_up(Side.CSMS, 0.0)
    return session


def tx_event(event: str, seq: int, **extra: Any) -> dict[str, Any]:
    return {"eventType": event, "timestamp": f"2026-01-01T10:{seq:02d}:00.000Z", "triggerReason": "Authorized",
            "seqNo": seq, "transactionInfo": {"transactionId": "tx-A"}, **extra}


def open_transactions(state: dict[str, Any]) -> list[str]:
    """The transaction ids a v201_v16 translator still holds, directly or as a composed step."""
    found: list[str] = []
    for key, value in state.items():
        if key == "tx" and isinstance(value, dict):
            found += list(value)
        elif isinstance(value, dict):
            found += open_transactions(value)
    return found


def timer_keys(actions: list[Any]) -> list[str]:
    return [a.key for a in actions if isinstance(a, StartTimer)]


def answer_csms(s: ChargerSession, out: list[Any], now: float, payloads: dict[str, dict[str, Any]]) -> list[Any]:
    """Answer every CALL sent to the CSMS in ``out`` (and those they lead to) with ``payloads[action]``."""
    log: list[Any] = []
    pending = [m for m in sent(out, Side.CSMS) if m[0] == 2]
    while pending:
        _, uid, action, _ = pending.pop(0)
        step = s.receive(Side.CSMS, frame(3, uid, payloads.get(action, {})), now)
        log += step
        pending += [m for m in sent(step, Side.CSMS) if m[0] == 2]
    return log


def start_held(s: ChargerSession) -> list[Any]:
    """Started and Ended reach the gateway while the CSMS does not take StartTransaction: both wait in the queue."""
    out = s.receive(Side.CHARGER, frame(2, "e0", "TransactionEvent",
                                        tx_event("Started", 0, idToken=TOKEN, evse={"id": 1})), 1.0)
    [key] = [k for k in timer_keys(out) if k.startswith("csms:")]
    out += s.timer_fired(key, 6.0)  # StartTransaction went unanswered: the station is answered locally
    ended = s.receive(Side.CHARGER, frame(2, "e1", "TransactionEvent", tx_event("Ended", 1)), 7.0)
    out += ended
    assert not [k for k in timer_keys(ended) if k.startswith("csms:")]  # the stop queues behind the start
    assert [m[:2] for m in sent(out, Side.CHARGER)] == [[3, "e0"], [3, "e1"]]
    assert open_transactions(s.ctx.state) == ["tx-A"]
    status = s.offline_status(8.0)
    assert (status["queued"], status["held_by_translator"]) == (2, 2)
    assert status["by_kind"] == {"charger": 0, "translated": 2} and status["oldest_age_s"] == 7.0
    return out


STOP16 = {"idTagInfo": {"status": "Accepted"}}
START16 = {"transactionId": 7, "idTagInfo": {"status": "Accepted"}}


@pytest.mark.parametrize("station", [V201, Version.V21])
def test_held_transaction_messages_go_out_when_the_csms_link_comes_up(station: Version) -> None:
    """A quiet station's held StartTransaction and StopTransaction reach the CSMS as soon as its link is up."""
    s = station_to_16(csms_up=False, station=station)
    start_held(s)

    out = s.link_up(Side.CSMS, 10.0)
    out += answer_csms(s, out, 10.1, {"StartTransaction": START16, "StopTransaction": STOP16})

    calls = [m[2] for m in sent(out, Side.CSMS) if m[0] == 2]
    assert calls[0] == "StartTransaction" and calls[-1] == "StopTransaction"
    [stop] = [m[3] for m in sent(out, Side.CSMS) if m[0] == 2 and m[2] == "StopTransaction"]
    assert stop["transactionId"] == 7
    assert sent(out, Side.CHARGER) == []  # the replay answers nobody
    assert open_transactions(s.ctx.state) == [] and s.pending_offline == 0


def test_held_work_is_retried_on_its_timer_while_the_station_is_silent() -> None:
    """A start the CSMS left unanswered is tried again every retry_interval, with no station message."""
    s = station_to_16(csms_up=True)
    out = start_held(s)
    assert "replay" in timer_keys(out)

    retry = s.timer_fired("replay", 37.0)
    assert [m[2] for m in sent(retry, Side.CSMS)] == ["StartTransaction"]
    retry += answer_csms(s, retry, 37.1, {"StartTransaction": START16, "StopTransaction": STOP16})
    assert [m[2] for m in sent(retry, Side.CSMS) if m[0] == 2][-1] == "StopTransaction"

    # Nothing is held any more: the next tick sends nothing and arms no further timer.
    later = s.timer_fired("replay", 67.0)
    assert sent(later) == [] and "replay" not in timer_keys(later)


def test_a_station_call_waits_behind_held_work_and_then_goes() -> None:
    """A CALL the station sends while held messages go out is relayed after them, in order."""
    s = station_to_16(csms_up=False)
    start_held(s)
    out = s.link_up(Side.CSMS, 10.0)
    out += s.receive(Side.CHARGER, frame(2, "h1", "Heartbeat", {}), 10.05)
    assert [m[2] for m in sent(out, Side.CSMS) if m[0] == 2] == ["StartTransaction"]

    out += answer_csms(s, out, 10.1, {"StartTransaction": START16, "StopTransaction": STOP16,
                                       "Heartbeat": {"currentTime": "2026-01-01T10:05:00Z"}})
    calls = [m[2] for m in sent(out, Side.CSMS) if m[0] == 2]
    assert calls.index("StopTransaction") < calls.index("Heartbeat")
    assert [m[:2] for m in sent(out, Side.CHARGER)] == [[3, "h1"]]


def test_a_closed_session_cancels_its_retry_timer() -> None:
    """Closing the session cancels an armed retry timer, and a late tick does nothing."""
    s = station_to_16(csms_up=True)
    start_held(s)
    out = s.close(40.0)
    assert any(isinstance(a, CancelTimer) and a.key == "replay" for a in out)
    assert s.timer_fired("replay", 41.0) == []
