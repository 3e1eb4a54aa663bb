"""Playbooks for a careless or hostile sender: bounded waiting CALLs, a flood closed, oversized frames kept small."""

from __future__ import annotations

import hashlib
import sys
import time
from typing import Any

import pytest

from adapters.base import Side
from gateway.ocppj import Version
from gateway.records import FrameRecord
from gateway.session import OVERSIZED_HEAD_CHARS, Disconnect, Problem, ValidationFailed
from tests.unit.test_session import frame, make, sent

OVERFLOW_CODE = {Version.V16: "ProtocolError", Version.V201: "RpcFrameworkError", Version.V21: "RpcFrameworkError"}
FORMAT_CODE = {Version.V16: "FormationViolation", Version.V201: "FormatViolation", Version.V21: "FormatViolation"}


def heartbeat(uid: str) -> str:
    return frame(2, uid, "Heartbeat", {})


@pytest.mark.parametrize("version", list(Version), ids=lambda v: v.value)
def test_calls_beyond_the_waiting_limit_get_the_versions_callerror(version: Version) -> None:
    """With one CALL in progress and max_waiting_calls waiting, the next CALL is refused in the sender's version."""
    s = make(version, max_waiting_calls=3)
    outs = [s.receive(Side.CHARGER, heartbeat(f"h{i}"), 1.0) for i in range(6)]
    assert [m[1] for m in sent(outs[0], Side.CSMS)] == ["h0"]
    assert all(sent(o) == [] for o in outs[1:4])  # h1..h3 wait
    for uid, out in (("h4", outs[4]), ("h5", outs[5])):
        [err] = sent(out, Side.CHARGER)
        assert err[:3] == [4, uid, OVERFLOW_CODE[version]]
        assert "wait for each answer" in err[3]
    assert [a.event for a in outs[4] + outs[5] if isinstance(a, Problem)] == ["call_queue_full"]  # once per flood


def test_waiting_calls_are_relayed_in_order_after_the_flood() -> None:
    """The CALLs that did wait still go out one at a time, in order, and the limit applies afresh afterwards."""
    s = make(Version.V16, max_waiting_calls=2)
    for i in range(4):
        s.receive(Side.CHARGER, heartbeat(f"h{i}"), 1.0)  # h0 in flight, h1-h2 wait, h3 refused
    relayed = []
    for uid in ("h0", "h1", "h2"):
        out = s.receive(Side.CSMS, frame(3, uid, {"currentTime": "2026-01-01T00:00:00Z"}), 2.0)
        assert [m[1] for m in sent(out, Side.CHARGER)] == [uid]
        relayed += [m[1] for m in sent(out, Side.CSMS)]
    assert relayed == ["h1", "h2"]
    assert s.receive(Side.CHARGER, heartbeat("h3"), 3.0) and s.pending(Side.CSMS) == 1  # accepted again


def test_a_charger_that_keeps_flooding_is_disconnected_with_a_reason() -> None:
    """After close_after_refused refusals in a row the charger is closed with 1008, and its further frames ignored."""
    s = make(Version.V201, max_waiting_calls=1, close_after_refused=3)
    outs = [s.receive(Side.CHARGER, heartbeat(f"h{i}"), 1.0) for i in range(5)]
    assert [len(sent(o, Side.CHARGER)) for o in outs] == [0, 0, 1, 1, 0]
    [close] = [a for a in outs[4] if isinstance(a, Disconnect)]
    assert (close.side, close.code) == (Side.CHARGER, 1008)
    assert "3 CALLs refused in a row" in close.reason and len(close.reason.encode()) <= 123  # a close reason's room
    assert s.receive(Side.CHARGER, heartbeat("late"), 1.1) == []


def test_a_csms_that_floods_is_refused_but_not_disconnected() -> None:
    """The flood limit answers a CSMS with CALLERRORs too; only a charger's connection is closed."""
    s = make(Version.V16, max_waiting_calls=1, close_after_refused=2)
    reset = frame(2, "{uid}", "Reset", {"type": "Soft"})
    outs = [s.receive(Side.CSMS, reset.replace("{uid}", f"r{i}"), 1.0) for i in range(5)]
    assert not [a for o in outs for a in o if isinstance(a, Disconnect)]
    assert [m[:3] for o in outs[2:] for m in sent(o, Side.CSMS)] == [[4, f"r{i}", "ProtocolError"] for i in (2, 3, 4)]


def test_duplicate_ids_among_waiting_calls_are_refused() -> None:
    """A messageId already waiting is refused as a duplicate, and is usable again once its CALL has started."""
    s = make(Version.V201)
    s.receive(Side.CHARGER, heartbeat("a"), 1.0)
    s.receive(Side.CHARGER, heartbeat("b"), 1.0)
    [err] = sent(s.receive(Side.CHARGER, heartbeat("b"), 1.0), Side.CHARGER)
    assert err[:3] == [4, "b", "RpcFrameworkError"]
    s.receive(Side.CSMS, frame(3, "a", {"currentTime": "2026-01-01T00:00:00Z"}), 2.0)  # b starts
    s.receive(Side.CSMS, frame(3, "b", {"currentTime": "2026-01-01T00:00:00Z"}), 2.0)  # b is answered
    assert [m[1] for m in sent(s.receive(Side.CHARGER, heartbeat("b"), 3.0), Side.CSMS)] == ["b"]


def test_each_waiting_call_costs_constant_time() -> None:
    """Queueing is O(1) per CALL: 100 times more waiting CALLs take well under 100 times as long per CALL."""

    def per_call(waiting: int) -> float:
        s = make(Version.V16, max_waiting_calls=waiting)
        texts = [heartbeat(f"h{i}") for i in range(waiting + 1)]
        started = time.perf_counter()
        for text in texts:
            s.receive(Side.CHARGER, text, 1.0)
        return (time.perf_counter() - started) / len(texts)

    per_call(200)  # warm up the validators
    # The best of three: another process taking the core for a moment must not look like O(n).
    small, large = min(per_call(200) for _ in range(3)), min(per_call(20_000) for _ in range(3))
    assert large < small * 5, (small, large)


@pytest.mark.parametrize("version", list(Version), ids=lambda v: v.value)
def test_an_oversized_frame_is_logged_as_size_digest_and_head(version: Version) -> None:
    """A refused oversized CALL is answered in the sender's version; the log keeps its size, digest and first 4 KiB."""
    s = make(version, max_frame_bytes=65536)
    big = frame(2, "big1", "DataTransfer", {"vendorId": "x", "data": "y" * 1_000_000})
    out = s.receive(Side.CHARGER, big, 1.0)
    [err] = sent(out, Side.CHARGER)
    assert err[:3] == [4, "big1", FORMAT_CODE[version]]
    [record, answer] = [a for a in out if isinstance(a, FrameRecord)]
    assert (record.direction, answer.direction, answer.message_type) == ("in", "out", "CALLERROR")
    digest = hashlib.sha256(big.encode()).hexdigest()
    assert record.message_type == "INVALID" and record.unique_id == "big1"
    assert record.frame.startswith(big[:OVERSIZED_HEAD_CHARS])
    assert record.frame.endswith(f"[truncated by the gateway: {len(big)} bytes in all, sha256 {digest}]")
    assert len(record.frame) < OVERSIZED_HEAD_CHARS + 200
    assert record.note is not None and f"{len(big)} bytes" in record.note and digest in record.note
    [problem] = [a for a in out if isinstance(a, Problem)]
    assert problem.event == "oversized_frame" and problem.detail["sha256"] == digest
    assert [a.path for a in out if isinstance(a, ValidationFailed)] == ["$"]


def test_nothing_returned_for_an_oversized_frame_keeps_the_frame_alive() -> None:
    """The actions for a refused 1 MB frame hold no reference to its text: it is freed when the caller drops it."""
    s = make(Version.V16, max_frame_bytes=65536)
    big = frame(2, "big2", "DataTransfer", {"vendorId": "x", "data": "y" * 1_000_000})
    before = sys.getrefcount(big)
    out = s.receive(Side.CHARGER, big, 1.0)
    assert sys.getrefcount(big) == before
    assert sum(sys.getsizeof(text) for text in _strings(out)) < 20_000


def _strings(actions: list[Any]) -> list[str]:
    """Every string an action holds (records are tuples, the other actions slotted dataclasses)."""
    fields = [v for a in actions for v in (a if isinstance(a, tuple) else (getattr(a, k) for k in a.__slots__))]
    return [v for v in fields if isinstance(v, str)]
