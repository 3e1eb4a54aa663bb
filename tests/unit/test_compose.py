"""compose(outer, inner): two translators driven as one, with small fake translators."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from adapters.base import (
    Context,
    CoverageRow,
    Handler,
    Notify,
    OutCall,
    PeerError,
    PeerTimeout,
    Refuse,
    Reply,
    Side,
    Step,
    Support,
)
from adapters.compose import Composed, compose
from gateway.ocppj import Call, ErrorKind, MessageType, Version

Script = Callable[["Fake", Side, Call, Context], Handler]


def forward(tr: Fake, origin: Side, call: Call, ctx: Context) -> Handler:
    """Stamp the payload on the way, stamp the answer on the way back."""
    payload = {**call.payload, "via": [*call.payload.get("via", []), tr.name]}
    result = yield OutCall(origin.other, call.action, payload)
    assert result is not None
    return {**result, "back": [*result.get("back", []), tr.name]}


@dataclass
class Fake:
    """A translator whose behaviour is a script; it records every call it handled."""

    name: str
    charger_version: Version
    csms_version: Version
    script: Script = forward
    rows: list[CoverageRow] = field(default_factory=list)
    seen: list[tuple[Side, str, str]] = field(default_factory=list)

    def handle_call(self, origin: Side, call: Call, ctx: Context) -> Handler:
        self.seen.append((origin, call.action, call.unique_id))
        return self.script(self, origin, call, ctx)

    def coverage(self) -> list[CoverageRow]:
        return self.rows


@dataclass
class Run:
    """What the runtime saw of one exchange."""

    steps: list[Step]
    result: dict[str, Any] | None
    replies: list[dict[str, Any]]


def drive(handler: Handler, answer: Callable[[OutCall], dict[str, Any]]) -> Run:
    """Play the runtime: answer each OutCall with ``answer`` (which may raise PeerError)."""
    steps: list[Step] = []
    replies: list[dict[str, Any]] = []
    value: dict[str, Any] | None = None
    error: BaseException | None = None
    while True:
        try:
            step = handler.throw(error) if error else handler.send(value)
        except StopIteration as stop:
            return Run(steps, stop.value, replies)
        steps.append(step)
        value, error = None, None
        if isinstance(step, Reply):
            replies.append(step.payload)
        elif isinstance(step, OutCall) and not step.send:
            try:
                value = answer(step)
            except PeerError as exc:
                error = exc


def ctx() -> Context:
    ids = iter(f"id-{i}" for i in range(1, 1000))
    return Context("CP1", Version.V21, Version.V16, new_uuid=lambda: next(ids))


def pair(outer: Script = forward, inner: Script = forward) -> tuple[Fake, Fake, Composed]:
    a = Fake("a_b", Version.V21, Version.V201, outer)
    b = Fake("b_c", Version.V201, Version.V16, inner)
    return a, b, compose(a, b)


def echo(call: OutCall) -> dict[str, Any]:
    return {"action": call.action, "to": call.to.value}


def test_charger_call_goes_through_outer_then_inner_and_the_answer_comes_back_reversed() -> None:
    """A charger CALL is translated by outer, then inner; the CSMS answer is translated by inner, then outer."""
    a, b, c = pair()
    run = drive(c.handle_call(Side.CHARGER, Call("u1", "Heartbeat", {}), ctx()), echo)
    assert [(s.to, s.action, s.payload) for s in run.steps if isinstance(s, OutCall)] == [
        (Side.CSMS, "Heartbeat", {"via": ["a_b", "b_c"]})
    ]
    assert run.result == {"action": "Heartbeat", "to": "csms", "back": ["b_c", "a_b"]}
    assert a.seen[0][0] is Side.CHARGER and b.seen[0][0] is Side.CHARGER


def test_csms_call_goes_through_inner_then_outer() -> None:
    """A CSMS CALL is translated by inner, then outer, and reaches the real charger."""
    a, b, c = pair()
    run = drive(c.handle_call(Side.CSMS, Call("u1", "Reset", {}), ctx()), echo)
    assert [(s.to, s.payload) for s in run.steps if isinstance(s, OutCall)] == [(Side.CHARGER, {"via": ["b_c", "a_b"]})]
    assert run.result == {"action": "Reset", "to": "charger", "back": ["a_b", "b_c"]}
    assert b.seen[0][0] is Side.CSMS and a.seen[0][0] is Side.CSMS


def test_virtual_call_gets_a_fresh_unique_id_unless_the_translator_reuses_one() -> None:
    """The nested CALL takes the OutCall's unique id when given, else a new id from the context."""

    def keep_id(tr: Fake, origin: Side, call: Call, c: Context) -> Handler:
        return (yield OutCall(origin.other, call.action, call.payload, unique_id=call.unique_id))

    _a, b, c = pair(outer=keep_id)
    drive(c.handle_call(Side.CHARGER, Call("u7", "Heartbeat", {}), ctx()), echo)
    assert b.seen[0][2] == "u7"
    _a, b, c = pair()
    drive(c.handle_call(Side.CHARGER, Call("u7", "Heartbeat", {}), ctx()), echo)
    assert b.seen[0][2] == "id-1"


@pytest.mark.parametrize("error", [PeerError("NotSupported", "no"), PeerTimeout("Timeout", "late")])
def test_peer_error_propagates_through_both_translators_unchanged(error: PeerError) -> None:
    """A CALLERROR (or timeout) from the CSMS reaches the composite's caller as the same exception."""
    _, _, c = pair()

    def fail(call: OutCall) -> dict[str, Any]:
        raise error

    with pytest.raises(PeerError) as caught:
        drive(c.handle_call(Side.CHARGER, Call("u1", "Heartbeat", {}), ctx()), fail)
    assert caught.value is error


def test_outer_can_catch_an_error_from_the_real_csms() -> None:
    """A PeerError that inner does not catch is thrown into outer at its OutCall."""

    def fallback(tr: Fake, origin: Side, call: Call, c: Context) -> Handler:
        try:
            yield OutCall(origin.other, call.action, {})
        except PeerTimeout as exc:
            return {"fallback": exc.code}
        return {}

    _, _, c = pair(outer=fallback)

    def late(call: OutCall) -> dict[str, Any]:
        raise PeerTimeout("Timeout")

    assert drive(c.handle_call(Side.CHARGER, Call("u1", "Heartbeat", {}), ctx()), late).result == {
        "fallback": "Timeout"
    }


def test_refusal_by_inner_is_a_callerror_in_the_middle_version_for_outer() -> None:
    """inner's Refuse reaches outer as PeerError spelled for the middle version (here 1.6's spelling)."""

    def refuse(tr: Fake, origin: Side, call: Call, c: Context) -> Handler:
        raise Refuse(ErrorKind.OCCURRENCE, "missing", {"path": "$.x"})
        yield  # pragma: no cover - makes this a generator

    seen: list[PeerError] = []

    def catch(tr: Fake, origin: Side, call: Call, c: Context) -> Handler:
        try:
            yield OutCall(origin.other, call.action, {})
        except PeerError as exc:
            seen.append(exc)
        return {}

    a = Fake("a_b", Version.V21, Version.V16, catch)
    b = Fake("b_c", Version.V16, Version.V201, refuse)
    drive(compose(a, b).handle_call(Side.CHARGER, Call("u1", "Heartbeat", {}), ctx()), echo)
    assert (seen[0].code, seen[0].description, seen[0].details) == (
        "OccurenceConstraintViolation",
        "missing",
        {"path": "$.x"},
    )


def test_refusal_by_the_top_translator_reaches_the_runtime() -> None:
    """A Refuse from the translator that received the real CALL is raised out of the composite."""

    def refuse(tr: Fake, origin: Side, call: Call, c: Context) -> Handler:
        raise Refuse(ErrorKind.NOT_SUPPORTED, "no such thing")
        yield  # pragma: no cover

    _, _, c = pair(outer=refuse)
    with pytest.raises(Refuse):
        drive(c.handle_call(Side.CHARGER, Call("u1", "X", {}), ctx()), echo)


def test_nested_reply_answers_outer_at_once_and_the_rest_runs_after_the_originator_is_answered() -> None:
    """inner's early Reply resumes outer; inner's remaining steps follow the composite's Reply."""

    def reply_then_work(tr: Fake, origin: Side, call: Call, c: Context) -> Handler:
        yield Reply({"status": "Accepted"})
        part = yield OutCall(Side.CSMS, "GetConfiguration", {})
        yield Notify(Side.CSMS, "NotifyReport", {"from": part})
        return None

    _, _, c = pair(inner=reply_then_work)
    run = drive(c.handle_call(Side.CHARGER, Call("u1", "GetBaseReport", {}), ctx()), echo)
    kinds = [(type(s).__name__, getattr(s, "action", None)) for s in run.steps]
    assert kinds == [("Reply", None), ("OutCall", "GetConfiguration"), ("Notify", "NotifyReport")]
    assert run.replies == [{"status": "Accepted", "back": ["a_b"]}]


def test_top_level_reply_is_passed_to_the_runtime_and_the_handler_carries_on() -> None:
    """The top translator's Reply goes out as is; its later steps still run."""

    def reply_first(tr: Fake, origin: Side, call: Call, c: Context) -> Handler:
        yield Reply({"ok": True})
        yield OutCall(Side.CSMS, "StatusNotification", {})
        return None

    _, _b, c = pair(outer=reply_first)
    run = drive(c.handle_call(Side.CHARGER, Call("u1", "X", {}), ctx()), echo)
    assert run.replies == [{"ok": True}]
    assert isinstance(run.steps[1], OutCall) and run.steps[1].payload == {"via": ["b_c"]}


def test_notify_to_the_virtual_side_runs_inline_and_its_failure_is_not_reported() -> None:
    """outer's Notify is translated by inner before outer's next step; inner refusing it is dropped."""

    def notify_then_call(tr: Fake, origin: Side, call: Call, c: Context) -> Handler:
        yield Notify(Side.CSMS, "NotifyEvent", {})
        yield Notify(Side.CSMS, "Refused", {})
        result = yield OutCall(Side.CSMS, call.action, {})
        return result

    def inner(tr: Fake, origin: Side, call: Call, c: Context) -> Handler:
        if call.action == "Refused":
            raise Refuse(ErrorKind.NOT_SUPPORTED, "no")
        return (yield OutCall(Side.CSMS, call.action, {"n": call.action}))

    _, _, c = pair(outer=notify_then_call, inner=inner)
    run = drive(c.handle_call(Side.CHARGER, Call("u1", "StatusNotification", {}), ctx()), echo)
    assert [s.action for s in run.steps if isinstance(s, OutCall)] == ["NotifyEvent", "StatusNotification"]
    assert run.result == {"action": "StatusNotification", "to": "csms"}


def test_inner_may_call_the_charger_back_through_outer_while_handling_a_charger_call() -> None:
    """A step of inner addressed to the charger is handled by outer as a CSMS call, recursively."""

    def boot(tr: Fake, origin: Side, call: Call, c: Context) -> Handler:
        result = yield OutCall(Side.CSMS, call.action, {})
        cfg = yield OutCall(Side.CHARGER, "SetVariables", {})
        assert result is not None and cfg is not None
        return {**result, "cfg": cfg}

    a, _b, c = pair(inner=boot)
    run = drive(c.handle_call(Side.CHARGER, Call("u1", "BootNotification", {}), ctx()), echo)
    assert [(s.to, s.action) for s in run.steps if isinstance(s, OutCall)] == [
        (Side.CSMS, "BootNotification"),
        (Side.CHARGER, "SetVariables"),
    ]
    assert run.result is not None and run.result["cfg"]["back"] == ["a_b"]
    assert (Side.CSMS, "SetVariables") in [(o, act) for o, act, _ in a.seen]


def test_each_translator_has_its_own_state_and_versions_and_save_reaches_the_session() -> None:
    """Same namespace name in both translators never collides; ctx.save() marks the real context dirty."""
    views: dict[str, tuple[Version, Version]] = {}

    def count(tr: Fake, origin: Side, call: Call, c: Context) -> Handler:
        ns = c.namespace("shared")
        ns["n"] = ns.get("n", 0) + (1 if tr.name == "a_b" else 10)
        views[tr.name] = (c.charger_version, c.csms_version)
        c.save()
        return (yield from forward(tr, origin, call, c))

    _, _, comp = pair(outer=count, inner=count)
    session = ctx()
    for _ in range(2):
        drive(comp.handle_call(Side.CHARGER, Call("u1", "Heartbeat", {}), session), echo)
    assert session.dirty
    assert sorted(v["shared"]["n"] for v in session.state.values()) == [2, 20]
    assert views == {"a_b": (Version.V21, Version.V201), "b_c": (Version.V201, Version.V16)}


def test_send_to_the_virtual_side_becomes_a_send_call_and_is_not_answered() -> None:
    """An OutCall with send=True is a SEND for the nested translator, which passes it on as a SEND."""
    seen_types: list[MessageType] = []

    def send_on(tr: Fake, origin: Side, call: Call, c: Context) -> Handler:
        seen_types.append(call.message_type)
        return (yield OutCall(origin.other, call.action, call.payload, send=call.message_type is MessageType.SEND))

    _, _, c = pair(outer=send_on, inner=send_on)
    call = Call("u1", "NotifyPeriodicEventStream", {}, MessageType.SEND)
    run = drive(c.handle_call(Side.CHARGER, call, ctx()), echo)
    assert seen_types == [MessageType.SEND, MessageType.SEND]
    assert [s.send for s in run.steps if isinstance(s, OutCall)] == [True]
    assert run.result is None


def test_composing_translators_that_do_not_meet_in_the_middle_fails() -> None:
    """outer's CSMS version must be inner's charger version."""
    a = Fake("a_b", Version.V21, Version.V201)
    b = Fake("b_c", Version.V16, Version.V201)
    with pytest.raises(ValueError, match="cannot compose"):
        compose(a, b)


def test_coverage_chains_rows_and_keeps_the_weaker_support_and_both_notes() -> None:
    """A composite row follows its target through inner; the weaker support wins; a local answer keeps its notes."""
    a, b, c = pair()
    a.rows = [
        CoverageRow(Side.CHARGER, "Authorize", Support.PARTIAL, "Authorize", "token truncated"),
        CoverageRow(Side.CHARGER, "NotifyDERAlarm", Support.NOT_SUPPORTED, "", "2.1 only"),
        CoverageRow(Side.CSMS, "Reset", Support.SUPPORTED, "Reset"),
    ]
    a.rows.append(CoverageRow(Side.CHARGER, "NotifyEvent", Support.PARTIAL, "NotifyEvent", "severity dropped"))
    b.rows = [
        CoverageRow(Side.CHARGER, "NotifyEvent", Support.LOCAL, "", "answered by the gateway"),
        CoverageRow(Side.CHARGER, "Authorize", Support.SUPPORTED, "Authorize", "idTag"),
        CoverageRow(Side.CSMS, "Reset", Support.PARTIAL, "Reset", "OnIdle -> Soft"),
    ]
    rows = {(r.origin, r.action): r for r in c.coverage()}
    assert rows[(Side.CHARGER, "Authorize")] == CoverageRow(
        Side.CHARGER, "Authorize", Support.PARTIAL, "Authorize", "token truncated; idTag"
    )
    assert rows[(Side.CHARGER, "NotifyDERAlarm")].support is Support.NOT_SUPPORTED
    assert rows[(Side.CHARGER, "NotifyEvent")] == CoverageRow(
        Side.CHARGER, "NotifyEvent", Support.LOCAL, "", "answered by the gateway"
    )
    assert rows[(Side.CSMS, "Reset")] == CoverageRow(Side.CSMS, "Reset", Support.PARTIAL, "Reset", "OnIdle -> Soft")
