"""Chain two translators: a charger speaking A reaches a CSMS speaking C through A<->B and B<->C.

``compose(outer, inner)`` is itself a translator. ``outer`` faces the real
charger and a virtual B CSMS; ``inner`` faces a virtual B charger and the real
CSMS. The composite handler drives both translators' handler generators:

- a step of ``outer`` addressed to the CSMS is, for ``inner``, a CALL from its
  charger side: ``inner`` handles it in a nested handler and that handler's
  answer is what ``outer`` receives (and symmetrically for ``inner``'s steps
  addressed to the charger);
- steps addressed to the real peers go out to the runtime unchanged, and the
  runtime's answers (or ``PeerError``/``PeerTimeout``) are delivered to the
  handler that asked;
- a nested handler that raises ``Refuse`` looks, to the translator that called
  it, like a CALLERROR in version B (``PeerError`` with B's code);
- a nested ``Reply`` answers the calling translator at once; the rest of that
  nested handler runs after the top-level handler has answered its originator
  (it is "background" work, as it would be between two real peers);
- a ``Notify`` to the virtual side runs its nested handler inline, so messages
  keep their order on the real link; its outcome is not reported to the
  notifier, exactly as for a real Notify, so a failure there is dropped.

Each translator gets its own view of the context: its own versions (the
virtual B on the inner side) and its own corner of ``ctx.state``, so their
``ctx.namespace`` names can never collide. Pure, like its parts: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from adapters.base import (
    Context,
    CoverageRow,
    Defer,
    Handler,
    Notify,
    OutCall,
    PeerError,
    Refuse,
    Reply,
    Report,
    Settlement,
    Side,
    Step,
    Support,
    Translator,
)
from gateway import schemas
from gateway.ocppj import Call, MessageType, Version, error_code

OUTER, INNER = 0, 1
Payload = dict[str, Any] | None
# A driver generator: yields steps for the real peers, returns (payload, finished).
Pump = Generator[Step, Payload, tuple[Payload, bool]]


@dataclass
class _LevelContext(Context):
    """One translator's view of the session context; ``save`` marks the real context dirty."""

    parent: Context | None = None

    def save(self) -> None:
        self.dirty = True
        if self.parent is not None:
            self.parent.save()


class Composed:
    """The translator ``charger -> outer -> inner -> CSMS``."""

    def __init__(self, outer: Translator, inner: Translator) -> None:
        if outer.csms_version is not inner.charger_version:
            raise ValueError(
                f"cannot compose {outer.name} ({outer.charger_version.value} -> {outer.csms_version.value}) "
                f"with {inner.name} ({inner.charger_version.value} -> {inner.csms_version.value})"
            )
        self.outer = outer
        self.inner = inner
        self.name = f"{outer.name}+{inner.name}"
        self.charger_version: Version = outer.charger_version
        self.csms_version: Version = inner.csms_version
        self.middle_version: Version = outer.csms_version

    def handle_call(self, origin: Side, call: Call, ctx: Context) -> Handler:
        return _Driver(self, ctx).run(origin, call)

    # Only the inner step faces the real CSMS, so only its ``Defer``s reach the offline queue: the queue's
    # questions about them go to it, in its own corner of the state (``adapters.base.Deferring``).

    def resolve(self, ref: dict[str, Any], action: str, payload: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
        inner = getattr(self.inner, "resolve", None)
        return payload if inner is None else inner(ref, action, payload, self._inner_context(ctx))

    def settled(self, ref: dict[str, Any], action: str, result: dict[str, Any] | None, error: PeerError | None,
                ctx: Context) -> Settlement:
        inner = getattr(self.inner, "settled", None)
        return Settlement() if inner is None else inner(ref, action, result, error, self._inner_context(ctx))

    def adopt_held(self, ctx: Context) -> list[Defer]:
        inner = getattr(self.inner, "adopt_held", None)
        return [] if inner is None else inner(self._inner_context(ctx))

    def _inner_context(self, ctx: Context) -> Context:
        return _Driver(self, ctx).contexts[INNER]

    def coverage(self) -> list[CoverageRow]:
        """Each message's fate through both steps: the weaker support wins and both notes are kept."""
        outer_rows = _index(self.outer.coverage())
        inner_rows = _index(self.inner.coverage())
        middle_actions = schemas.actions(self.middle_version)
        result: list[CoverageRow] = []
        for origin, first, second in (
            (Side.CHARGER, outer_rows, inner_rows),
            (Side.CSMS, inner_rows, outer_rows),
        ):
            for (side, action), row in sorted(first.items()):
                if side is not origin:
                    continue
                if row.support in (Support.LOCAL, Support.NOT_SUPPORTED):
                    result.append(row)
                    continue
                targets = [t for t in re.findall(r"[A-Za-z0-9]+", row.target) if t in middle_actions]
                seconds = [second[(origin, t)] for t in targets if (origin, t) in second]
                if not seconds:
                    result.append(row)
                    continue
                support = max([row.support, *(r.support for r in seconds)], key=_RANK.__getitem__)
                firsts = [row.notes] if support in (Support.SUPPORTED, Support.PARTIAL) else []
                # Answered locally or refused at the second step: what the first step does is moot.
                notes = "; ".join(n for n in [*firsts, *(r.notes for r in seconds)] if n)
                target = ", ".join(dict.fromkeys(r.target for r in seconds if r.target))
                result.append(CoverageRow(origin, action, support, target, notes))
        return result


_RANK = {Support.SUPPORTED: 0, Support.PARTIAL: 1, Support.LOCAL: 2, Support.NOT_SUPPORTED: 3}


def _index(rows: list[CoverageRow]) -> dict[tuple[Side, str], CoverageRow]:
    return {(r.origin, r.action): r for r in rows}


def compose(outer: Translator, inner: Translator) -> Composed:
    """A charger speaking ``outer.charger_version`` routed to a CSMS speaking ``inner.csms_version``."""
    return Composed(outer, inner)


class _Driver:
    """Runs one composite exchange: the top-level handler and every handler nested in it."""

    def __init__(self, composed: Composed, ctx: Context) -> None:
        self.composed = composed
        self.ctx = ctx
        self.levels: tuple[Translator, Translator] = (composed.outer, composed.inner)
        self.contexts = (
            self._child(OUTER, composed.outer, composed.charger_version, composed.middle_version),
            self._child(INNER, composed.inner, composed.middle_version, composed.csms_version),
        )
        # Nested handlers that answered early (Reply) and still have work to do.
        self.background: list[tuple[int, Handler]] = []

    def _child(self, level: int, tr: Translator, charger: Version, csms: Version) -> _LevelContext:
        key = f"{'outer' if level == OUTER else 'inner'}:{tr.name}"
        return _LevelContext(
            charger_id=self.ctx.charger_id,
            charger_version=charger,
            csms_version=csms,
            options=self.ctx.options,
            state=self.ctx.namespace(key),
            clock=self.ctx.clock,
            new_uuid=self.ctx.new_uuid,
            ids=self.ctx.ids,
            parent=self.ctx,
        )

    def run(self, origin: Side, call: Call) -> Handler:
        level = OUTER if origin is Side.CHARGER else INNER
        handler = self.levels[level].handle_call(origin, call, self.contexts[level])
        result, finished = yield from self._pump(level, handler)
        replied = False
        if not finished:
            yield Reply(result or {})
            replied = True
            result, _ = yield from self._finish(level, handler)
        if self.background:
            if not replied and call.message_type is MessageType.CALL and result is not None:
                yield Reply(result)
            yield from self._run_nested_leftovers()
        return result

    def _run_nested_leftovers(self) -> Generator[Step, Payload, None]:
        """Finish the nested handlers that answered early; their originators were answered already."""
        while self.background:
            level, handler = self.background.pop(0)
            try:
                yield from self._finish(level, handler)
            except (PeerError, Refuse):
                pass  # nobody is left to tell

    def _finish(self, level: int, handler: Handler) -> Pump:
        """Run a handler that has answered already to its end (a second Reply is ignored)."""
        while True:
            result, finished = yield from self._pump(level, handler)
            if finished:
                return result, True

    def _pump(self, level: int, handler: Handler) -> Pump:
        """Drive ``handler`` (of translator ``level``) until it returns or yields a Reply."""
        value: Payload = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    step = handler.throw(error) if error is not None else handler.send(value)
                except StopIteration as stop:
                    return stop.value, True
                value, error = None, None
                if isinstance(step, Reply):
                    return step.payload, False
                if isinstance(step, Report):
                    yield step  # for the operator, whichever translator made it
                    continue
                try:
                    if self._is_virtual(level, step.to):
                        # A Defer between the two steps is an ordinary CALL: only the real CSMS has a queue.
                        value = yield from self._nested(level, step.call if isinstance(step, Defer) else step)
                    else:
                        value = yield step
                except PeerError as exc:
                    error = exc
        except GeneratorExit:
            handler.close()
            raise

    @staticmethod
    def _is_virtual(level: int, to: Side) -> bool:
        """Whether ``to`` seen from translator ``level`` is the other translator, not a real peer."""
        return (level == OUTER and to is Side.CSMS) or (level == INNER and to is Side.CHARGER)

    def _nested(self, level: int, step: OutCall | Notify) -> Generator[Step, Payload, Payload]:
        """Hand ``step`` to the other translator as a CALL from its ``step.to.other`` side."""
        target = INNER if level == OUTER else OUTER
        send = isinstance(step, OutCall) and step.send
        unique_id = (step.unique_id if isinstance(step, OutCall) else None) or self.ctx.new_uuid()
        call = Call(unique_id, step.action, step.payload, MessageType.SEND if send else MessageType.CALL)
        try:
            handler = self.levels[target].handle_call(step.to.other, call, self.contexts[target])
            result, finished = yield from self._pump(target, handler)
        except Refuse as exc:
            if isinstance(step, Notify):
                return None
            code = error_code(self.composed.middle_version, exc.kind)
            raise PeerError(code, exc.description, exc.details) from exc
        except PeerError:
            if isinstance(step, Notify):
                return None
            raise
        if not finished:
            self.background.append((target, handler))
        return None if isinstance(step, Notify) else result
