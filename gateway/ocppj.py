"""OCPP-J framing: parse and build the RPC frames of 1.6J, 2.0.1 and 2.1.

Frames are parsed here rather than with ``ocpp.messages.unpack`` because that
knows only message types 2-4 and reports every problem as FormatViolation;
the gateway must answer in the sender's own version and understand 2.1's
CALLRESULTERROR and SEND.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import orjson


class Version(str, enum.Enum):
    """An OCPP version the gateway speaks, valued by its WebSocket subprotocol suffix."""

    V16 = "1.6"
    V201 = "2.0.1"
    V21 = "2.1"

    @property
    def subprotocol(self) -> str:
        return "ocpp" + self.value

    @classmethod
    def from_subprotocol(cls, name: str) -> Version | None:
        return _BY_SUBPROTOCOL.get(name)

    @classmethod
    def parse(cls, text: str) -> Version:
        """Accept "1.6", "1.6J", "ocpp1.6", "2.0.1", "ocpp2.0.1", "2.1", "ocpp2.1"."""
        t = text.strip().lower().removeprefix("ocpp").removesuffix("j")
        for v in cls:
            if v.value == t:
                return v
        raise ValueError(f"unknown OCPP version {text!r} (expected 1.6, 2.0.1 or 2.1)")


_BY_SUBPROTOCOL = {v.subprotocol: v for v in Version}
SUBPROTOCOLS = tuple(v.subprotocol for v in Version)


class MessageType(enum.IntEnum):
    CALL = 2
    CALLRESULT = 3
    CALLERROR = 4
    CALLRESULTERROR = 5  # 2.1 only
    SEND = 6  # 2.1 only


# parse() looks a message type up here: calling the enum (``MessageType(2)``) costs several times more.
_MESSAGE_TYPES = {int(m): m for m in MessageType}


class ErrorKind(enum.Enum):
    """Version-neutral error categories; ``error_code`` spells them per version."""

    FORMAT = "format"
    PROPERTY = "property"
    OCCURRENCE = "occurrence"
    TYPE = "type"
    NOT_IMPLEMENTED = "not_implemented"
    NOT_SUPPORTED = "not_supported"
    INTERNAL = "internal"
    PROTOCOL = "protocol"
    SECURITY = "security"
    GENERIC = "generic"
    MESSAGE_TYPE = "message_type"
    RPC_FRAMEWORK = "rpc_framework"


_CODES_16 = {
    ErrorKind.FORMAT: "FormationViolation",
    ErrorKind.PROPERTY: "PropertyConstraintViolation",
    ErrorKind.OCCURRENCE: "OccurenceConstraintViolation",  # sic: the 1.6 spelling
    ErrorKind.TYPE: "TypeConstraintViolation",
    ErrorKind.NOT_IMPLEMENTED: "NotImplemented",
    ErrorKind.NOT_SUPPORTED: "NotSupported",
    ErrorKind.INTERNAL: "InternalError",
    ErrorKind.PROTOCOL: "ProtocolError",
    ErrorKind.SECURITY: "SecurityError",
    ErrorKind.GENERIC: "GenericError",
    # 1.6 has neither MessageTypeNotSupported nor RpcFrameworkError.
    ErrorKind.MESSAGE_TYPE: "ProtocolError",
    ErrorKind.RPC_FRAMEWORK: "ProtocolError",
}
_CODES_2X = {
    ErrorKind.FORMAT: "FormatViolation",
    ErrorKind.PROPERTY: "PropertyConstraintViolation",
    ErrorKind.OCCURRENCE: "OccurrenceConstraintViolation",
    ErrorKind.TYPE: "TypeConstraintViolation",
    ErrorKind.NOT_IMPLEMENTED: "NotImplemented",
    ErrorKind.NOT_SUPPORTED: "NotSupported",
    ErrorKind.INTERNAL: "InternalError",
    ErrorKind.PROTOCOL: "ProtocolError",
    ErrorKind.SECURITY: "SecurityError",
    ErrorKind.GENERIC: "GenericError",
    ErrorKind.MESSAGE_TYPE: "MessageTypeNotSupported",
    ErrorKind.RPC_FRAMEWORK: "RpcFrameworkError",
}
ERROR_CODES: dict[Version, dict[ErrorKind, str]] = {
    Version.V16: _CODES_16,
    Version.V201: _CODES_2X,
    Version.V21: _CODES_2X,
}

# Every spelling seen in the wild, to a kind: accept all on input, emit the target's.
_KIND_BY_CODE: dict[str, ErrorKind] = {}
for _codes in (_CODES_2X, _CODES_16):
    for _kind, _code in _codes.items():
        _KIND_BY_CODE.setdefault(_code, _kind)
_KIND_BY_CODE.update(
    {
        "FormationViolation": ErrorKind.FORMAT,
        "FormatViolation": ErrorKind.FORMAT,
        "OccurenceConstraintViolation": ErrorKind.OCCURRENCE,
        "OccurrenceConstraintViolation": ErrorKind.OCCURRENCE,
        "ProtocolError": ErrorKind.PROTOCOL,
        "MessageTypeNotSupported": ErrorKind.MESSAGE_TYPE,
        "RpcFrameworkError": ErrorKind.RPC_FRAMEWORK,
    }
)


def error_code(version: Version, kind: ErrorKind) -> str:
    """The CALLERROR code that ``version`` uses for ``kind``."""
    return ERROR_CODES[version][kind]


def error_kind(code: str) -> ErrorKind:
    """The kind of a received error code in any version's spelling (unknown -> GENERIC)."""
    return _KIND_BY_CODE.get(code, ErrorKind.GENERIC)


def translate_error_code(code: str, to: Version) -> str:
    """Respell an error code for ``to``; a code ``to`` already knows is kept as is."""
    if code in ERROR_CODES[to].values():
        return code
    return error_code(to, error_kind(code))


@dataclass(slots=True)
class Call:
    unique_id: str
    action: str
    payload: dict[str, Any]
    message_type: MessageType = MessageType.CALL  # or SEND in 2.1


@dataclass(slots=True)
class CallResult:
    unique_id: str
    payload: dict[str, Any]


@dataclass(slots=True)
class CallError:
    unique_id: str
    code: str
    description: str = ""
    details: dict[str, Any] | None = None
    message_type: MessageType = MessageType.CALLERROR  # or CALLRESULTERROR in 2.1


Frame = Call | CallResult | CallError


class FrameError(Exception):
    """A frame that cannot be handled; ``unique_id`` is "-1" when it could not be read."""

    def __init__(self, kind: ErrorKind, description: str, unique_id: str = "-1") -> None:
        super().__init__(description)
        self.kind = kind
        self.description = description
        self.unique_id = unique_id


def parse(text: str | bytes, version: Version) -> Frame:
    """Parse one OCPP-J frame, raising ``FrameError`` with the right kind."""
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise FrameError(ErrorKind.FORMAT, f"not valid JSON: {exc}") from None
    if not isinstance(msg, list) or not msg:
        raise FrameError(ErrorKind.RPC_FRAMEWORK, "an OCPP-J frame is a JSON array")
    mtype = msg[0]
    uid = msg[1] if len(msg) > 1 else None
    if not isinstance(uid, str) or not uid or len(uid) > 36:
        raise FrameError(ErrorKind.RPC_FRAMEWORK, "messageId missing or not a string of 1-36 characters")
    if type(mtype) is not int:
        raise FrameError(ErrorKind.RPC_FRAMEWORK, "messageTypeId is not an integer", uid)
    if mtype == 2 or (mtype == 6 and version is Version.V21):
        if len(msg) != 4 or not isinstance(msg[2], str):
            raise FrameError(ErrorKind.FORMAT, "a CALL is [2, messageId, action, payload]", uid)
        if not isinstance(msg[3], dict):
            raise FrameError(ErrorKind.FORMAT, "the CALL payload must be a JSON object", uid)
        return Call(uid, msg[2], msg[3], _MESSAGE_TYPES[mtype])
    if mtype == 3:
        if len(msg) != 3 or not isinstance(msg[2], dict):
            raise FrameError(ErrorKind.FORMAT, "a CALLRESULT is [3, messageId, payload]", uid)
        return CallResult(uid, msg[2])
    if mtype == 4 or (mtype == 5 and version is Version.V21):
        if len(msg) not in (4, 5) or not isinstance(msg[2], str) or not isinstance(msg[3], str):
            raise FrameError(
                ErrorKind.FORMAT, "a CALLERROR is [4, messageId, errorCode, errorDescription, errorDetails]", uid
            )
        details = msg[4] if len(msg) == 5 else {}
        if not isinstance(details, dict):
            raise FrameError(ErrorKind.FORMAT, "errorDetails must be a JSON object", uid)
        return CallError(uid, msg[2], msg[3], details, _MESSAGE_TYPES[mtype])
    raise FrameError(ErrorKind.MESSAGE_TYPE, f"message type {mtype!r} is not supported in OCPP {version.value}", uid)


class SerializeError(ValueError):
    """A payload that cannot be written as JSON (an integer beyond 64 bits, nesting past 254 levels, ...)."""


def serialize(frame: Frame) -> str:
    """The OCPP-J text of a frame; ``SerializeError`` if the payload cannot be encoded."""
    if isinstance(frame, Call):
        arr: list[Any] = [int(frame.message_type), frame.unique_id, frame.action, frame.payload]
    elif isinstance(frame, CallResult):
        arr = [3, frame.unique_id, frame.payload]
    else:
        arr = [int(frame.message_type), frame.unique_id, frame.code, frame.description, frame.details or {}]
    try:
        return orjson.dumps(arr).decode()
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise SerializeError(str(exc)) from None


def message_type_name(frame: Frame) -> str:
    if isinstance(frame, Call):
        return frame.message_type.name
    if isinstance(frame, CallResult):
        return "CALLRESULT"
    return frame.message_type.name
