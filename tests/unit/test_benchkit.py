"""The benchmark's instruments: frames they send are valid OCPP, their WebSocket framing round-trips."""

from __future__ import annotations

import orjson
import pytest

from gateway import schemas
from gateway.bench import Options, parse_metrics, render_table, summarise
from gateway.benchkit import ws
from gateway.benchkit.frames import (
    CsmsAnswers,
    charger_payloads_v16,
    charger_templates_v16,
    csms_payloads,
    example_payload,
    split_call,
)
from gateway.ocppj import Version

TS = "2025-01-01T00:00:00Z"


@pytest.mark.parametrize("kind", sorted(charger_payloads_v16(TS)))
def test_every_charger_call_is_valid_16(kind: str) -> None:
    """Each CALL the simulated 1.6 chargers send satisfies the 1.6 request schema."""
    action, payload = charger_payloads_v16(TS)[kind]
    assert schemas.validate(Version.V16, action, example_payload(payload)) is None


@pytest.mark.parametrize("kind", sorted(charger_payloads_v16(TS)))
def test_templates_build_the_same_frame_as_json(kind: str) -> None:
    """A template filled with a unique id (and transaction id) is exactly the OCPP-J CALL of its payload."""
    action, payload = charger_payloads_v16(TS)[kind]
    frame = charger_templates_v16(TS)[kind].build(b"1f", b"42")
    assert orjson.loads(frame) == [2, "1f", action, example_payload(payload, 42)]


@pytest.mark.parametrize("version", [Version.V16, Version.V201])
def test_every_csms_answer_is_valid(version: Version) -> None:
    """Each fixed answer of the simulated CSMS satisfies its response schema."""
    for action, payload in csms_payloads(version, TS).items():
        assert schemas.validate(version, action, payload, response=True) is None, action


@pytest.mark.parametrize(
    ("version", "action", "payload"),
    [
        (Version.V16, "StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": TS}),
        (Version.V201, "TransactionEvent", {"eventType": "Started", "timestamp": TS, "triggerReason": "Authorized",
                                            "seqNo": 0, "transactionInfo": {"transactionId": "t1"},
                                            "idToken": {"idToken": "A", "type": "ISO14443"}}),
        (Version.V201, "TransactionEvent", {"eventType": "Updated", "timestamp": TS,
                                            "triggerReason": "MeterValuePeriodic", "seqNo": 1,
                                            "transactionInfo": {"transactionId": "t1"}}),
        (Version.V201, "NotifyEvent", {"generatedAt": TS, "seqNo": 0, "eventData": []}),
    ],
)
def test_dynamic_and_default_answers_are_valid(version: Version, action: str, payload: dict[str, object]) -> None:
    """Answers built per CALL (transaction ids, idTokenInfo, empty defaults) satisfy the response schema."""
    frame = orjson.dumps([2, "u1", action, payload])
    answer = orjson.loads(CsmsAnswers(version, TS).answer(b"u1", action.encode(), frame))
    assert answer[:2] == [3, "u1"]
    assert schemas.validate(version, action, answer[2], response=True) is None


def test_unknown_action_gets_a_callerror() -> None:
    """A CALL whose answer the simulator cannot make up is refused with NotImplemented, not ignored."""
    answer = orjson.loads(CsmsAnswers(Version.V16, TS).answer(b"u", b"NoSuchAction", b""))
    assert answer[:3] == [4, "u", "NotImplemented"]


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (b'[2,"abc","Heartbeat",{}]', (b"abc", b"Heartbeat")),
        (b'[2, "abc", "Heartbeat", {}]', (b"abc", b"Heartbeat")),
        (b'[2,"a\\"b","Heartbeat",{}]', (b'a\\"b', b"Heartbeat")),
        (b'[3,"abc",{}]', None),
        (b"not json", None),
    ],
)
def test_split_call(frame: bytes, expected: tuple[bytes, bytes] | None) -> None:
    """The CSMS finds the unique id and action of compact and spaced CALLs, and skips anything else."""
    assert split_call(frame) == expected


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_frames_round_trip_masked_and_unmasked(size: int) -> None:
    """Client (masked) and server frames of every length encoding parse back to their payload."""
    payload = bytes(i % 251 for i in range(size))
    reader = ws.FrameReader()
    data = ws.client_frame(payload, b"\x01\x02\x03\x04") + ws.server_frame(payload, ws.OP_PING)
    got = []
    for i in range(0, len(data), 7000):  # arbitrary TCP segmentation
        got += reader.feed(data[i : i + 7000])
    assert got == [(ws.OP_TEXT, payload), (ws.OP_PING, payload)]


def test_fragmented_message_is_reassembled_around_a_control_frame() -> None:
    """A text message in two fragments comes out whole; a ping between them comes out on its own."""
    first = bytes((0x01, 3)) + b"abc"  # text, FIN=0
    ping = ws.server_frame(b"p", ws.OP_PING)
    last = bytes((0x80, 3)) + b"def"  # continuation, FIN=1
    assert ws.FrameReader().feed(first + ping + last) == [(ws.OP_PING, b"p"), (ws.OP_TEXT, b"abcdef")]


def test_oversized_frame_is_a_protocol_error() -> None:
    """A frame announcing more than the limit is refused before its bytes are buffered."""
    with pytest.raises(ws.ProtocolError):
        ws.FrameReader().feed(bytes((0x81, 127)) + (ws.MAX_MESSAGE + 1).to_bytes(8, "big"))


def test_accept_key_matches_rfc_6455_example() -> None:
    """The handshake answer is the one RFC 6455 section 1.3 gives for its sample key."""
    assert ws.accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_parse_metrics_sums_over_labels() -> None:
    """Counter samples are summed per name; buckets and _created samples are left out."""
    text = (
        '# HELP ocpp_gateway_frames_total x\n'
        'ocpp_gateway_frames_total{direction="in",peer="charger"} 3.0\n'
        'ocpp_gateway_frames_total{direction="out",peer="csms"} 4.0\n'
        'ocpp_gateway_frames_created{direction="in"} 1.7e9\n'
        'ocpp_gateway_call_roundtrip_seconds_bucket{le="0.1"} 9.0\n'
        'ocpp_gateway_store_records_dropped 0.0\n'
    )
    assert parse_metrics(text) == {"ocpp_gateway_frames_total": 7.0, "ocpp_gateway_store_records_dropped": 0.0}


def _scenario(calls_per_s: float, p99: float, cpu: float | None, reconnect: float) -> dict[str, object]:
    sat: dict[str, object] = {"calls_per_s": calls_per_s, "calls": 1000,
                              "cpu_seconds": {"loadgen": 0.25, "csms": 0.125}}
    if cpu is not None:
        sat["cpu_seconds"] = {"gateway": cpu, "loadgen": 0.25, "csms": 0.125}
    out: dict[str, object] = {
        "status": "ok", "saturation": sat,
        "realistic": {"p50_ms": 1.0, "p99_ms": p99, "calls_per_s": 100.0, "calls": 100, "cpu_seconds": {}},
        "storm": {"reconnect_seconds": reconnect, "chargers": 50},
    }
    if cpu is not None:
        out["idle"] = {"levels": [{"requested": 10, "held": 10, "rss_per_charger_kib": 30.0}]}
    return out


def test_summary_ratios_and_targets() -> None:
    """Ratios are gateway / direct, added latency is the difference, and each target gets a verdict."""
    scenarios = {"direct": _scenario(1000.0, 2.0, None, 1.0), "passthrough": _scenario(600.0, 5.0, 0.5, 3.0),
                 "translate": {"status": "not yet"}}
    summary = summarise(scenarios, Options(idle=[10]))
    pt = summary["passthrough"]
    assert pt["throughput_ratio"] == pytest.approx(0.6)
    assert pt["added_p99_ms"] == pytest.approx(3.0)
    assert pt["reconnect_ratio"] == pytest.approx(3.0)
    assert pt["gateway_cpu_s_per_1000"] == pytest.approx(0.5)
    assert pt["peers_cpu_s_per_1000"] == pytest.approx(0.375)
    verdicts = {t["target"]: t["verdict"] for t in summary["targets"]}
    assert verdicts["pass-through throughput >= 50% of direct"] == "met"
    assert verdicts["translated throughput >= 40% of direct"] == "not measured"
    table = render_table({"scenarios": scenarios, "summary": summary})
    assert "(60%)" in table and "not yet" in table
    assert "Chargers + CSMS CPU s / 1,000 CALLs" in table and "0.375" in table


def test_throughput_that_drops_log_records_misses_its_target() -> None:
    """A saturation figure reached while the message log dropped records does not count as met."""
    passthrough = _scenario(900.0, 3.0, 0.5, 2.0)
    passthrough["metrics_after_load"] = {"ocpp_gateway_store_records_dropped": 1234.0}
    scenarios = {"direct": _scenario(1000.0, 2.0, None, 1.0), "passthrough": passthrough}
    summary = summarise(scenarios, Options(idle=[10]))
    [target] = [t for t in summary["targets"] if t["target"] == "pass-through throughput >= 50% of direct"]
    assert target["verdict"] == "missed" and "dropped 1,234 records" in target["note"]
    assert "Message-log records dropped" in render_table({"scenarios": scenarios, "summary": summary})
