"""Playbooks for store-and-forward in the session: the CSMS away, local answers, the durable queue, replay."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest

from adapters.base import Context, IdPool, Side
from adapters.passthrough import PassThrough
from gateway.ocppj import Version
from gateway.offline import OfflinePolicy, Queued
from gateway.session import (
    DURABLE,
    ChargerSession,
    Enqueue,
    NeedIds,
    OfflineEvent,
    ReplayTurn,
    Send,
    SessionLimits,
    Settle,
    StartTimer,
)

T0 = "2026-03-01T10:00:00.000Z"
START = {"connectorId": 1, "idTag": "TAG1", "meterStart": 100, "timestamp": T0}


def make(version: Version = Version.V16, ids: list[int] | None = None, **policy: Any) -> ChargerSession:
    uuids = itertools.count(1)
    ctx = Context("CP1", version, version, new_uuid=lambda: f"gw-{next(uuids)}", ids=IdPool(ids or [500, 501]))
    limits = SessionLimits(call_timeout=30.0, offline=OfflinePolicy(**policy))
    return ChargerSession("CP1", PassThrough(version), ctx, limits)


def frame(*parts: Any) -> str:
    return orjson.dumps(list(parts)).decode()


def sent(actions: list[Any], to: Side) -> list[list[Any]]:
    return [orjson.loads(a.text) for a in actions if isinstance(a, Send) and a.to is to]


def down(s: ChargerSession) -> ChargerSession:
    s.link_up(Side.CSMS, 0.0)
    s.link_down(Side.CSMS, 0.5)
    return s


def returns(s: ChargerSession, now: float) -> list[Any]:
    """The CSMS link comes back and the estate grants the replay turn the session asks for."""
    out = s.link_up(Side.CSMS, now)
    assert [a.take for a in out if isinstance(a, ReplayTurn)] == [True]
    return out + s.replay_turn_granted(now)


def test_a_start_while_the_csms_is_down_is_answered_with_a_reserved_id_after_it_is_queued() -> None:
    """StartTransaction with the link down: answered at once with a store-reserved id; Enqueue comes before the Send."""
    s = down(make())
    out = s.receive(Side.CHARGER, frame(2, "s1", "StartTransaction", START), 1.0)
    assert sent(out, Side.CHARGER) == [[3, "s1", {"transactionId": 500, "idTagInfo": {"status": "Accepted"}}]]
    assert sent(out, Side.CSMS) == []
    kinds = [type(a) for a in out]
    assert kinds.index(Enqueue) < kinds.index(Send)  # durable before answered
    assert [a.kind for a in out if isinstance(a, OfflineEvent)] == ["answered"]
    assert s.pending_offline == 1


@pytest.mark.parametrize(("version", "action", "payload", "answer"), [
    (Version.V16, "Heartbeat", {}, {"currentTime": T0}),
    (Version.V16, "Authorize", {"idTag": "X"}, {"idTagInfo": {"status": "Accepted"}}),
    (Version.V16, "StopTransaction", {"transactionId": 5, "meterStop": 9, "timestamp": T0, "idTag": "X"},
     {"idTagInfo": {"status": "Accepted"}}),
    (Version.V16, "StopTransaction", {"transactionId": 5, "meterStop": 9, "timestamp": T0}, {}),
    (Version.V16, "BootNotification", {"chargePointVendor": "A", "chargePointModel": "B"},
     {"currentTime": T0, "interval": 300, "status": "Pending"}),
    (Version.V201, "TransactionEvent", {"eventType": "Started", "timestamp": T0, "triggerReason": "Authorized",
                                        "seqNo": 0, "transactionInfo": {"transactionId": "t"},
                                        "idToken": {"idToken": "X", "type": "ISO14443"}},
     {"idTokenInfo": {"status": "Accepted"}}),
    (Version.V201, "StatusNotification", {"timestamp": T0, "connectorStatus": "Occupied", "evseId": 1,
                                          "connectorId": 1}, {}),
])
def test_local_answers_are_minimal_and_valid_in_the_chargers_version(
    version: Version, action: str, payload: dict[str, Any], answer: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each answerable CALL gets the schema's minimal answer, with the token verdict wherever a token came."""
    s = down(make(version))
    monkeypatch.setattr(s.ctx, "now_iso", lambda: T0)
    out = s.receive(Side.CHARGER, frame(2, "u1", action, payload), 1.0)
    assert sent(out, Side.CHARGER) == [[3, "u1", answer]]
    queued = [a.item.action for a in out if isinstance(a, Enqueue)]
    assert queued == ([] if action in ("Heartbeat", "Authorize") else [action])


def test_unknown_id_tag_policy_reject_and_the_cached_verdict() -> None:
    """An idTag the CSMS never judged follows unknown_id_tag; one it judged gets the CSMS's last verdict."""
    s = make(unknown_id_tag="reject")
    s.link_up(Side.CSMS, 0.0)
    s.receive(Side.CHARGER, frame(2, "a1", "Authorize", {"idTag": "KNOWN"}), 1.0)
    s.receive(Side.CSMS, frame(3, "a1", {"idTagInfo": {"status": "Blocked"}}), 1.1)
    s.link_down(Side.CSMS, 2.0)
    known = s.receive(Side.CHARGER, frame(2, "a2", "Authorize", {"idTag": "KNOWN"}), 3.0)
    other = s.receive(Side.CHARGER, frame(2, "a3", "Authorize", {"idTag": "OTHER"}), 3.1)
    assert sent(known, Side.CHARGER)[0][2] == {"idTagInfo": {"status": "Blocked"}}
    assert sent(other, Side.CHARGER)[0][2] == {"idTagInfo": {"status": "Invalid"}}


def test_status_notifications_are_coalesced_per_connector() -> None:
    """A second StatusNotification for a connector supersedes the queued one; other connectors keep theirs."""
    s = down(make())
    st = {"errorCode": "NoError"}
    s.receive(Side.CHARGER, frame(2, "n1", "StatusNotification", {**st, "connectorId": 1, "status": "Preparing"}), 1)
    s.receive(Side.CHARGER, frame(2, "n2", "StatusNotification", {**st, "connectorId": 2, "status": "Charging"}), 1)
    out = s.receive(Side.CHARGER, frame(2, "n3", "StatusNotification", {**st, "connectorId": 1,
                                                                       "status": "Charging"}), 2)
    assert [(a.seq, a.reason) for a in out if isinstance(a, Settle)] == [(1, "superseded")]
    assert s.pending_offline == 2


def test_replay_sends_the_queue_in_order_before_new_charger_calls_and_rewrites_the_transaction_id() -> None:
    """On link-up the queue goes out in order; the CSMS's transactionId replaces the local one from then on."""
    s = down(make())
    s.receive(Side.CHARGER, frame(2, "s1", "StartTransaction", START), 1.0)
    mv = {"connectorId": 1, "transactionId": 500, "meterValue": [
        {"timestamp": T0, "sampledValue": [{"value": "150"}]}]}
    s.receive(Side.CHARGER, frame(2, "m1", "MeterValues", mv), 2.0)
    out = returns(s, 3.0)
    assert sent(out, Side.CSMS) == [[2, "s1", "StartTransaction", START]]
    # A new CALL while the replay runs: answered locally and queued behind the backlog.
    late = s.receive(Side.CHARGER, frame(2, "m2", "MeterValues", mv), 3.1)
    assert sent(late, Side.CHARGER) == [[3, "m2", {}]] and sent(late, Side.CSMS) == []
    out = s.receive(Side.CSMS, frame(3, "s1", {"transactionId": 42, "idTagInfo": {"status": "Accepted"}}), 3.2)
    assert [a.seq for a in out if isinstance(a, Settle)] == [1]
    assert sent(out, Side.CSMS) == [[2, "m1", "MeterValues", {**mv, "transactionId": 42}]]
    assert sent(out, Side.CHARGER) == []  # the charger was answered long ago
    out = s.receive(Side.CSMS, frame(3, "m1", {}), 3.3)
    assert sent(out, Side.CSMS) == [[2, "m2", "MeterValues", {**mv, "transactionId": 42}]]
    s.receive(Side.CSMS, frame(3, "m2", {}), 3.4)
    assert s.pending_offline == 0
    live = s.receive(Side.CHARGER, frame(2, "m3", "MeterValues", mv), 4.0)
    assert sent(live, Side.CSMS) == [[2, "m3", "MeterValues", {**mv, "transactionId": 42}]]
    # The CSMS stopping it remotely names its own id; the charger hears the one it knows.
    out = s.receive(Side.CSMS, frame(2, "r1", "RemoteStopTransaction", {"transactionId": 42}), 4.1)
    assert sent(out, Side.CHARGER) == [[2, "r1", "RemoteStopTransaction", {"transactionId": 500}]]


def test_a_verdict_that_differs_is_reported_not_rolled_back() -> None:
    """The CSMS says Invalid for a start the gateway accepted: counted, shown, and remembered for the tag."""
    s = down(make())
    s.receive(Side.CHARGER, frame(2, "s1", "StartTransaction", START), 1.0)
    returns(s, 2.0)
    out = s.receive(Side.CSMS, frame(3, "s1", {"transactionId": 42, "idTagInfo": {"status": "Invalid"}}), 2.1)
    assert [a.kind for a in out if isinstance(a, OfflineEvent)] == ["replayed", "differs"]
    status = s.offline_status(3.0)
    assert status["verdict_differs"] == 1
    assert status["recent_differences"][0]["local"] == "Accepted"
    assert status["recent_differences"][0]["csms"] == "Invalid"
    s.link_down(Side.CSMS, 4.0)
    again = s.receive(Side.CHARGER, frame(2, "a1", "Authorize", {"idTag": "TAG1"}), 5.0)
    assert sent(again, Side.CHARGER)[0][2] == {"idTagInfo": {"status": "Invalid"}}


def test_a_silent_csms_gets_answer_after_then_its_late_answer_settles_the_message() -> None:
    """Link up, CSMS silent: after answer_after the charger is answered; the late CSMS answer is not replayed."""
    s = make(answer_after=5.0)
    s.link_up(Side.CSMS, 0.0)
    out = s.receive(Side.CHARGER, frame(2, "s1", "StartTransaction", START), 1.0)
    timer = next(a for a in out if isinstance(a, StartTimer) and a.key.startswith("offline:"))
    assert timer.delay == 5.0
    out = s.timer_fired(timer.key, 6.0)
    assert sent(out, Side.CHARGER)[0][2]["transactionId"] == 500
    assert s.pending_offline == 1
    out = s.receive(Side.CSMS, frame(3, "s1", {"transactionId": 42, "idTagInfo": {"status": "Accepted"}}), 7.0)
    assert [a.seq for a in out if isinstance(a, Settle)] == [1]
    assert sent(out, Side.CHARGER) == [] and s.pending_offline == 0


BOOT16 = {"chargePointVendor": "ACME", "chargePointModel": "One"}


def test_a_boot_waiting_for_a_link_that_cannot_be_opened_is_answered_when_the_first_attempt_fails() -> None:
    """A charger the CSMS accepted before that boots while its CSMS is away gets Accepted at the first failed
    connect, not after call_timeout; the boot is kept for the CSMS and sent once when it comes back."""
    s = make()
    s.book.learn_boot(60)
    out = s.receive(Side.CHARGER, frame(2, "b1", "BootNotification", BOOT16), 1.0)
    assert sent(out, Side.CHARGER) == [] and sent(out, Side.CSMS) == []  # waits for the link, which is connecting
    out = s.link_down(Side.CSMS, 1.2)  # the first connect attempt failed
    answer = sent(out, Side.CHARGER)
    assert answer[0][:2] == [3, "b1"] and (answer[0][2]["status"], answer[0][2]["interval"]) == ("Accepted", 60)
    assert [a.item.action for a in out if isinstance(a, Enqueue)] == ["BootNotification"]
    out = s.receive(Side.CHARGER, frame(2, "st1", "StatusNotification",
                                        {"connectorId": 1, "errorCode": "NoError", "status": "Available"}), 1.3)
    assert sent(out, Side.CHARGER) == [[3, "st1", {}]]  # later CALLs are answered at once
    out = s.link_up(Side.CSMS, 2.0)
    assert [f[2] for f in sent(out, Side.CSMS)] == ["BootNotification"]  # the exchange's own CALL, sent once
    out = s.receive(Side.CSMS, frame(3, "b1", {"status": "Accepted", "currentTime": T0, "interval": 60}), 2.1)
    assert sent(out, Side.CHARGER) == []  # the charger had its answer; the CSMS's settles the kept boot
    assert [a.seq for a in out if isinstance(a, Settle)] == [1]


def test_a_boot_the_csms_never_accepted_waits_answer_after_for_a_csms_that_cannot_be_reached() -> None:
    """Pending would idle the charger for a whole interval: a first boot waits answer_after for the CSMS to come
    back, and gets the CSMS's own answer if it does."""
    s = make(answer_after=5.0)
    s.receive(Side.CHARGER, frame(2, "b1", "BootNotification", BOOT16), 1.0)
    out = s.link_down(Side.CSMS, 1.2)
    assert sent(out, Side.CHARGER) == []
    timer = next(a for a in out if isinstance(a, StartTimer) and a.key.startswith("offline:"))
    assert timer.delay == 5.0
    out = s.link_up(Side.CSMS, 2.0)
    assert [f[2] for f in sent(out, Side.CSMS)] == ["BootNotification"]
    accepted = {"status": "Accepted", "currentTime": T0, "interval": 60}
    out = s.receive(Side.CSMS, frame(3, "b1", accepted), 2.1)
    assert sent(out, Side.CHARGER) == [[3, "b1", accepted]]  # the CSMS's own verdict
    assert s.timer_fired(timer.key, 6.2) == []


def test_a_first_boot_is_told_pending_when_the_csms_stays_away_for_answer_after() -> None:
    """No CSMS within answer_after: Pending, with the default retry interval, kept for the CSMS."""
    s = make(answer_after=5.0)
    s.receive(Side.CHARGER, frame(2, "b1", "BootNotification", BOOT16), 1.0)
    timer = next(a for a in s.link_down(Side.CSMS, 1.2) if isinstance(a, StartTimer))
    out = s.timer_fired(timer.key, 6.2)
    assert sent(out, Side.CHARGER)[0][2]["status"] == "Pending" and s.pending_offline == 1


def test_a_call_the_gateway_makes_as_the_charger_is_never_answered_locally() -> None:
    """An introduction's BootNotification to a CSMS that cannot be reached fails (the gateway needs the CSMS's
    verdict); it is not answered by the gateway itself, nor queued."""
    s = make()
    s.gateway_calls = {"intro-1"}
    s.receive(Side.CHARGER, frame(2, "intro-1", "BootNotification", BOOT16), 1.0)
    out = s.link_down(Side.CSMS, 1.2)
    assert sent(out, Side.CHARGER) == [] and not any(isinstance(a, Enqueue) for a in out)
    timeout = next(a for a in s.receive(Side.CHARGER, frame(2, "h1", "Heartbeat", {}), 1.3) if isinstance(a, Send))
    assert orjson.loads(timeout.text)[:2] == [3, "h1"]  # the charger's own CALLs are still answered
    assert s.pending_offline == 0


def test_a_full_queue_drops_notifications_first_and_never_drops_a_transaction_message_silently() -> None:
    """At max_queue the oldest non-transaction message makes room; full of transaction messages, a CALLERROR."""
    s = down(make(max_queue=2, ids=[500, 501, 502]))
    s.receive(Side.CHARGER, frame(2, "n1", "StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                                                  "status": "Available"}), 1)
    s.receive(Side.CHARGER, frame(2, "s1", "StartTransaction", START), 2)
    out = s.receive(Side.CHARGER, frame(2, "s2", "StartTransaction", {**START, "connectorId": 2}), 3)
    assert [(a.seq, a.reason) for a in out if isinstance(a, Settle)] == [(1, "dropped")]
    assert sent(out, Side.CHARGER)[0][0] == 3
    out = s.receive(Side.CHARGER, frame(2, "s3", "StartTransaction", {**START, "connectorId": 3}), 4)
    assert sent(out, Side.CHARGER)[0][:3] == [4, "s3", "InternalError"]
    assert not any(isinstance(a, Enqueue) for a in out)
    assert s.offline_status(5)["dropped"] == 1


def test_a_restored_queue_is_replayed_before_anything_new() -> None:
    """What the store kept (after a restart) goes to the CSMS first, and new sequence numbers follow it."""
    s = make()
    s.restore_queue([Queued(7, 1.0, "StartTransaction", "s1", START,
                            {"transactionId": 900, "idTagInfo": {"status": "Accepted"}})])
    out = returns(s, 2.0)
    assert sent(out, Side.CSMS) == [[2, "s1", "StartTransaction", START]]
    mv = {"connectorId": 1, "transactionId": 900, "meterValue": [{"timestamp": T0, "sampledValue": [{"value": "1"}]}]}
    late = s.receive(Side.CHARGER, frame(2, "m1", "MeterValues", mv), 2.1)
    assert [a.item.seq for a in late if isinstance(a, Enqueue)] == [8]


def test_each_session_queues_into_its_own_queue_made_when_first_needed() -> None:
    """Sessions start with no queue of their own; what one queues (live or restored) is never another's."""
    queued, idle, restored = down(make()), down(make()), make()
    queued.receive(Side.CHARGER, frame(2, "s1", "StartTransaction", START), 1.0)
    restored.restore_queue([Queued(7, 1.0, "Heartbeat", "h1", {}, {"currentTime": T0})])
    assert (queued.pending_offline, idle.pending_offline, restored.pending_offline) == (1, 0, 1)
    assert sent(idle.link_up(Side.CSMS, 2.0), Side.CSMS) == []
    assert sent(returns(queued, 2.0), Side.CSMS) == [[2, "s1", "StartTransaction", START]]
    assert sent(returns(restored, 2.0), Side.CSMS) == [[2, "h1", "Heartbeat", {}]]


def test_reserved_ids_are_handed_out_once_in_the_order_they_were_reserved() -> None:
    """Blocks of reserved numbers, consecutive or not, come out first in, first out, each once, then None."""
    pool = IdPool([500, 501])
    pool.add(range(7, 10))
    pool.add([3, 1, 2])
    assert len(pool) == 8
    assert [pool.take() for _ in range(9)] == [500, 501, 7, 8, 9, 3, 1, 2, None]
    assert len(pool) == 0


def test_without_ids_a_start_is_refused_and_more_are_asked_for() -> None:
    """No reserved transaction id (the store could not be asked): the charger gets a CALLERROR, not a made-up id."""
    s = down(make(ids=[]))
    s.ctx.ids = IdPool()
    out = s.receive(Side.CHARGER, frame(2, "s1", "StartTransaction", START), 1.0)
    assert sent(out, Side.CHARGER)[0][:3] == [4, "s1", "InternalError"]
    assert any(isinstance(a, NeedIds) for a in out)


def test_reject_mode_keeps_the_old_behaviour() -> None:
    """offline.mode reject: nothing is answered locally; the CALL waits for the CSMS."""
    s = down(make(mode="reject"))
    out = s.receive(Side.CHARGER, frame(2, "s1", "StartTransaction", START), 1.0)
    assert sent(out, Side.CHARGER) == [] and not any(isinstance(a, DURABLE) for a in out)


def turns(actions: list[Any]) -> list[bool]:
    return [a.take for a in actions if isinstance(a, ReplayTurn)]


def test_the_replay_waits_for_a_shared_turn_and_gives_it_back_when_the_queue_is_empty() -> None:
    """Link up with a backlog: the session asks for a turn and sends nothing until it is granted; the last
    settled message gives the turn back."""
    s = down(make())
    s.receive(Side.CHARGER, frame(2, "s1", "StartTransaction", START), 1.0)
    out = s.link_up(Side.CSMS, 2.0)
    assert turns(out) == [True] and sent(out, Side.CSMS) == []
    assert turns(s.timer_fired("replay", 3.0)) == []  # asked once, not again while waiting
    out = s.replay_turn_granted(4.0)
    assert sent(out, Side.CSMS) == [[2, "s1", "StartTransaction", START]] and turns(out) == []
    out = s.receive(Side.CSMS, frame(3, "s1", {"transactionId": 42, "idTagInfo": {"status": "Accepted"}}), 4.1)
    assert turns(out) == [False] and s.pending_offline == 0


@pytest.mark.parametrize("event", ["link lost", "charger gone"])
def test_a_turn_granted_after_the_need_passed_is_given_back_at_once(event: str) -> None:
    """The link dropped (or the charger left) while the session waited for its turn: the grant is returned."""
    s = down(make())
    s.receive(Side.CHARGER, frame(2, "s1", "StartTransaction", START), 1.0)
    assert turns(s.link_up(Side.CSMS, 2.0)) == [True]
    if event == "link lost":
        s.link_down(Side.CSMS, 2.5)
        out = s.replay_turn_granted(3.0)
        assert turns(out) == [False] and sent(out, Side.CSMS) == []
    else:
        assert turns(s.close(2.5)) == [False]  # the runner cancels the pending claim
        assert turns(s.replay_turn_granted(3.0)) == [False]


def test_a_replay_stopped_by_a_lost_link_gives_the_turn_back_and_asks_again_later() -> None:
    """The CSMS drops mid-replay: the turn is returned (others may replay); the next link-up asks again."""
    s = down(make())
    s.receive(Side.CHARGER, frame(2, "s1", "StartTransaction", START), 1.0)
    s.link_up(Side.CSMS, 2.0)
    s.replay_turn_granted(2.0)
    assert turns(s.link_down(Side.CSMS, 2.5)) == [False]
    assert s.pending_offline == 1
    assert turns(s.link_up(Side.CSMS, 3.0)) == [True]


def _v201_v16_session(state: dict[str, Any] | None = None, **policy: Any) -> ChargerSession:
    from adapters import registry

    translator = registry.translator_for(Version.V201, Version.V16, {})
    assert translator is not None
    uuids = itertools.count(1)
    ctx = Context("CS1", Version.V201, Version.V16, new_uuid=lambda: f"gw-{next(uuids)}", ids=IdPool([]),
                  state=state or {})
    return ChargerSession("CS1", translator, ctx, SessionLimits(call_timeout=30.0, offline=OfflinePolicy(**policy)))


def _tx_event(kind: str, seq: int, wh: int, **extra: Any) -> dict[str, Any]:
    return {"eventType": kind, "timestamp": T0, "triggerReason": "Authorized" if kind == "Started" else
            "MeterValuePeriodic", "seqNo": seq, "transactionInfo": {"transactionId": "tx-a"},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": T0, "sampledValue": [{"value": wh}]}], **extra}


def test_a_201_stations_meter_values_in_flight_when_the_16_link_drops_are_not_lost() -> None:
    """2.0.1 station -> 1.6 CSMS: the MeterValues an Updated became is in flight when the link drops; it is
    not taken for a refusal and dropped: it reaches the CSMS when the link is back."""
    s = _v201_v16_session()
    s.link_up(Side.CSMS, 0.0)
    token = {"idToken": "TAG2", "type": "ISO14443"}
    out = s.receive(Side.CHARGER, frame(2, "t0", "TransactionEvent", {**_tx_event("Started", 0, 1000),
                                                                       "idToken": token}), 1.0)
    start = sent(out, Side.CSMS)[0]
    assert start[2] == "StartTransaction"
    out = s.receive(Side.CSMS, frame(3, start[1], {"transactionId": 77, "idTagInfo": {"status": "Accepted"}}), 1.1)
    out += s.receive(Side.CHARGER, frame(2, "t1", "TransactionEvent", _tx_event("Updated", 1, 3000)), 2.0)
    while (calls := [c for c in sent(out, Side.CSMS) if c[2] != "MeterValues"]):
        out = s.receive(Side.CSMS, frame(3, calls[0][1], {}), 2.1)  # StatusNotifications and the like
    meter = [c for c in sent(out, Side.CSMS) if c[2] == "MeterValues"]
    assert meter and meter[0][3]["transactionId"] == 77
    s.link_down(Side.CSMS, 2.5)
    assert s.pending_offline == 1 and s.offline_status(2.6)["held_by_translator"] == 1
    out = s.link_up(Side.CSMS, 3.0)
    assert turns(out) == [True] and sent(out, Side.CSMS) == []  # held work waits for a turn like a replay
    out = s.replay_turn_granted(3.1)
    again = [c for c in sent(out, Side.CSMS) if c[2] == "MeterValues"]
    assert again and again[0][3]["transactionId"] == 77
    out = s.receive(Side.CSMS, frame(3, again[0][1], {}), 3.2)
    assert turns(out) == [False] and s.pending_offline == 0


def test_what_a_201_station_sent_before_its_16_start_was_answered_counts_as_queued() -> None:
    """The CSMS does not answer the StartTransaction a Started became: the station is answered after
    answer_after, and the start the translator keeps shows as queued (once) until the CSMS takes it."""
    s = _v201_v16_session()
    s.link_up(Side.CSMS, 0.0)
    token = {"idToken": "TAG2", "type": "ISO14443"}
    out = s.receive(Side.CHARGER, frame(2, "t0", "TransactionEvent", {**_tx_event("Started", 0, 1000),
                                                                       "idToken": token}), 1.0)
    timer = next(a for a in out if isinstance(a, StartTimer) and a.key.startswith("offline:"))
    call_timeout = next(a for a in out if isinstance(a, StartTimer) and a.key.startswith("csms:"))
    out = s.timer_fired(timer.key, 6.0)
    assert sent(out, Side.CHARGER)[0][:2] == [3, "t0"]
    assert s.offline_status(6.0)["queued"] >= 1  # queued by the gateway while the exchange goes on
    s.timer_fired(call_timeout.key, 31.0)  # no answer at all: the translator keeps the start
    status = s.offline_status(31.0)
    assert (status["queued"], status["held_by_translator"]) == (1, 1)  # one message, counted once


TOKEN = {"idToken": "TAG2", "type": "ISO14443"}


def _start_unanswered(s: ChargerSession) -> None:
    """Link up, a Started the CSMS never answers: answered at answer_after, the start kept after call_timeout."""
    s.link_up(Side.CSMS, 0.0)
    out = s.receive(Side.CHARGER, frame(2, "t0", "TransactionEvent", {**_tx_event("Started", 0, 1000),
                                                                       "idToken": TOKEN}), 1.0)
    [timer] = [a.key for a in out if isinstance(a, StartTimer) and a.key.startswith("offline:")]
    [call_timeout] = [a.key for a in out if isinstance(a, StartTimer) and a.key.startswith("csms:")]
    assert sent(s.timer_fired(timer, 6.0), Side.CHARGER)[0][:2] == [3, "t0"]
    s.timer_fired(call_timeout, 31.0)


def test_a_201_to_16_backlog_counts_in_depth_and_age_and_against_the_bound() -> None:
    """The 1.6 StartTransaction the translator deferred is a queue item like the charger's: it shows in the depth,
    by kind, and in the oldest age (from when it was made), and it fills max_queue_per_charger, so the station's
    next transaction message beyond the bound is refused for the station to keep and retry."""
    s = _v201_v16_session(max_queue=2)
    _start_unanswered(s)
    status = s.offline_status(41.0)
    assert (status["queued"], status["held_by_translator"], status["oldest_age_s"]) == (1, 1, 40.0)
    assert status["by_kind"] == {"charger": 0, "translated": 1}
    assert (s.pending_offline, s.offline_oldest) == (1, 1.0)  # what the metrics read

    out = s.receive(Side.CHARGER, frame(2, "t1", "TransactionEvent", _tx_event("Updated", 1, 2000)), 41.0)
    assert sent(out, Side.CHARGER) == [[3, "t1", {}]] and sent(out, Side.CSMS) == []  # behind the start
    assert s.offline_status(42.0)["by_kind"] == {"charger": 1, "translated": 1}
    out = s.receive(Side.CHARGER, frame(2, "t2", "TransactionEvent", _tx_event("Ended", 2, 3000)), 42.0)
    assert sent(out, Side.CHARGER)[0][:3] == [4, "t2", "InternalError"]
    assert s.pending_offline == 2


def test_the_deferred_start_goes_first_when_the_csms_answers_and_the_rest_follows_in_order() -> None:
    """After the outage the replay sends the kept StartTransaction (same message id), then the station's queued
    Updated as a MeterValues under the CSMS's id; every item is settled."""
    s = _v201_v16_session()
    _start_unanswered(s)
    first_try = s.offline_status(31.0)
    s.receive(Side.CHARGER, frame(2, "t1", "TransactionEvent", _tx_event("Updated", 1, 2000)), 32.0)
    out = s.timer_fired("replay", 61.0)
    assert turns(out) == [True]
    out = s.replay_turn_granted(61.0)
    [start] = sent(out, Side.CSMS)
    assert start[2] == "StartTransaction" and first_try["queued"] == 1
    out = s.receive(Side.CSMS, frame(3, start[1], {"transactionId": 88, "idTagInfo": {"status": "Accepted"}}), 61.1)
    calls: list[list[Any]] = []
    while (pending := [c for c in sent(out, Side.CSMS) if c[0] == 2]):
        calls += pending
        out = [a for c in pending for a in s.receive(Side.CSMS, frame(3, c[1], {}), 61.2)]
    meter = [c for c in calls if c[2] == "MeterValues"]
    assert meter and meter[0][3]["transactionId"] == 88
    assert s.pending_offline == 0 and turns(out) == [False]


def test_a_csms_verdict_on_a_deferred_start_that_differs_from_the_local_one_is_reported_and_learnt() -> None:
    """The station was answered locally (Accepted) while its StartTransaction waited; when the replay delivers it
    and the 1.6 CSMS says Invalid, the difference is counted and listed, and the verdict is learnt for the next
    local answer."""
    s = _v201_v16_session()
    _start_unanswered(s)
    out = s.timer_fired("replay", 61.0)
    out = s.replay_turn_granted(61.0)
    [start] = sent(out, Side.CSMS)
    out = s.receive(Side.CSMS, frame(3, start[1], {"transactionId": 5, "idTagInfo": {"status": "Invalid"}}), 61.1)
    assert [a.kind for a in out if isinstance(a, OfflineEvent)] == ["replayed", "differs"]
    summary = s.offline_status(62.0)
    assert summary["verdict_differs"] == 1
    [difference] = summary["recent_differences"]
    assert (difference["action"], difference["local"], difference["csms"]) == ("StartTransaction", "Accepted",
                                                                                "Invalid")
    assert s.book.verdict("ISO14443:TAG2") == {"status": "Invalid"}


def test_a_201_station_whose_start_is_lost_with_the_link_is_answered_at_once_with_a_token_verdict() -> None:
    """The 1.6 link drops while the StartTransaction a Started became is in flight: the station is answered at
    once, locally, with idTokenInfo (not {} and not after call_timeout); the start stays queued."""
    s = _v201_v16_session()
    s.link_up(Side.CSMS, 0.0)
    out = s.receive(Side.CHARGER, frame(2, "t0", "TransactionEvent", {**_tx_event("Started", 0, 1000),
                                                                       "idToken": TOKEN}), 1.0)
    [start] = sent(out, Side.CSMS)
    out = s.link_down(Side.CSMS, 1.2)
    assert sent(out, Side.CHARGER) == [[3, "t0", {"idTokenInfo": {"status": "Accepted"}}]]
    assert s.offline_status(1.3)["by_kind"] == {"charger": 0, "translated": 1}
    out = returns(s, 2.0)
    assert [c[:3] for c in sent(out, Side.CSMS)] == [[2, start[1], "StartTransaction"]]  # the same message id


def test_a_translated_message_on_its_way_is_not_a_backlog() -> None:
    """While the StartTransaction a Started became is in flight (queued durably, sent at once), it is no backlog:
    not shown as queued, and a CALL the station pipelines behind it waits for it instead of being answered
    locally."""
    s = _v201_v16_session()
    s.link_up(Side.CSMS, 0.0)
    out = s.receive(Side.CHARGER, frame(2, "t0", "TransactionEvent", {**_tx_event("Started", 0, 1000),
                                                                       "idToken": TOKEN}), 1.0)
    [start] = sent(out, Side.CSMS)
    assert any(isinstance(a, Enqueue) for a in out)
    assert (s.pending_offline, s.offline_status(1.1)["queued"], s.offline_oldest) == (0, 0, None)
    status = {"timestamp": T0, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1}
    out = s.receive(Side.CHARGER, frame(2, "n1", "StatusNotification", status), 1.1)
    assert sent(out, Side.CHARGER) == [] and not any(isinstance(a, Enqueue) for a in out)
    out = s.receive(Side.CSMS, frame(3, start[1], {"transactionId": 5, "idTagInfo": {"status": "Accepted"}}), 1.2)
    assert sent(out, Side.CHARGER)[0][:2] == [3, "t0"]
    assert any(isinstance(a, Settle) for a in out) and s.pending_offline == 0


def test_held_messages_of_an_older_gateway_become_queue_items_on_load() -> None:
    """A state saved with the translator's held messages (tx.start, tx.queue): on load they become translated queue
    items after those the store kept, committed with the state that no longer holds them, and are replayed."""
    mv = {"connectorId": 1, "meterValue": [{"timestamp": T0, "sampledValue": [{"value": "900"}]}]}
    held = {"connector": 1, "int": None, "started": T0, "begin_wh": 100, "seqs": [0, 1, 2],
            "start": {"connectorId": 1, "idTag": "TAG2", "meterStart": 100, "timestamp": T0},
            "queue": [{"action": "MeterValues", "payload": mv},
                      {"action": "StopTransaction", "payload": {"meterStop": 900, "timestamp": T0}}]}
    s = _v201_v16_session(state={"v201_v16": {"tx": {"tx-a": held}}})
    s.restore_queue([Queued(4, 0.5, "StatusNotification", "n1", {"timestamp": T0, "connectorStatus": "Occupied",
                                                                  "evseId": 1, "connectorId": 1}, {})])
    out = s.adopt_held(1.0)
    enqueued = [a.item for a in out if isinstance(a, Enqueue)]
    assert [(i.seq, i.kind, i.action) for i in enqueued] == [
        (5, "translated", "StartTransaction"), (6, "translated", "MeterValues"), (7, "translated", "StopTransaction")]
    saves = [a for a in out if isinstance(a, DURABLE) and not isinstance(a, Enqueue)]
    assert saves and "queue" not in saves[-1].state["v201_v16"]["tx"]["tx-a"]
    assert s.adopt_held(2.0) == []  # once
    assert s.offline_status(3.0)["by_kind"] == {"charger": 1, "translated": 3}

    out = returns(s, 3.0)
    calls: list[list[Any]] = []
    while (pending := [c for c in sent(out, Side.CSMS) if c[0] == 2]):
        calls += pending
        answer = {"transactionId": 5, "idTagInfo": {"status": "Accepted"}} if pending[0][2] == "StartTransaction" \
            else {}
        out = s.receive(Side.CSMS, frame(3, pending[0][1], answer), 3.1)
    # The station's status (restored first) as Preparing, then the start, its status now that 1.6 knows it, ...
    assert [c[2] for c in calls] == ["StatusNotification", "StartTransaction", "StatusNotification", "MeterValues",
                                     "StopTransaction"]
    assert [c[3].get("transactionId") for c in calls if c[2] in ("MeterValues", "StopTransaction")] == [5, 5]
    assert s.pending_offline == 0


def test_the_sessions_of_one_chargers_csms_legs_number_their_queue_items_apart() -> None:
    """An old primary draining a transaction and the new primary queue into one table keyed by (charger, seq):
    with the charger's shared numbering their items never take the same number, whatever each leg used before."""
    numbers: dict[str, Any] = {}
    legs = []
    for old_seq in (40, 7):
        ctx = Context("CP1", Version.V16, Version.V16, state={"offline": {"seq": old_seq}}, ids=IdPool([1, 2]))
        legs.append(ChargerSession("CP1", PassThrough(Version.V16), ctx, SessionLimits(offline=OfflinePolicy()),
                                   queue_numbers=numbers))
    active, draining = legs
    active.restore_queue([Queued(60, 0.5, "StartTransaction", "s0", START, {"transactionId": 9})])
    down(active)
    down(draining)
    seqs = []
    for n, leg in enumerate([draining, active, draining, active]):
        meter = {"connectorId": 1, "meterValue": [{"timestamp": T0, "sampledValue": [{"value": str(n)}]}]}
        out = leg.receive(Side.CHARGER, frame(2, f"m{n}", "MeterValues", meter), 1.0 + n)
        seqs += [a.item.seq for a in out if isinstance(a, Enqueue)]
    assert seqs == [61, 62, 63, 64] and numbers == {"seq": 65}


async def test_replay_slots_grant_at_most_their_limit_and_a_released_wait_never_gets_one() -> None:
    """Three claims on two slots: two are granted; giving one back grants the third; a claim released while
    it waits is never granted."""
    import asyncio

    from gateway.connection.services import ReplaySlots

    slots = ReplaySlots(2)
    granted: list[str] = []
    claims = {name: slots.claim(lambda name=name: granted.append(name)) for name in ("a", "b", "c", "d")}
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert granted == ["a", "b"] and slots.replaying == 2
    claims["c"].release()  # gave up while waiting
    claims["a"].release()
    for _ in range(3):
        await asyncio.sleep(0)
    assert granted == ["a", "b", "d"] and slots.replaying == 2
    claims["a"].release()  # twice is harmless
    claims["b"].release()
    claims["d"].release()
    assert slots.replaying == 0
