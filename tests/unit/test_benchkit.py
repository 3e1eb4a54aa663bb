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


def _scenario(calls_per_s: float, p99: float, cpu: float | None, reconnect: float, role: str = "gateway",
              fixed_cpu: float | None = None, storm: int = 50) -> dict[str, object]:
    """Raw readings of one scenario: 1,000 CALLs in each measured stage, ``cpu`` seconds of its proxy."""
    peers = {"loadgen": 0.25, "csms": 0.125}
    sat: dict[str, object] = {"calls_per_s": calls_per_s, "calls": 1000,
                              "cpu_seconds": peers if cpu is None else {role: cpu, **peers}}
    fixed: dict[str, object] = {
        "offered_per_s": 1000.0, "calls_per_s": 990.0, "calls": 1000, "p50_ms": 0.5, "p99_ms": 2.5,
        "cpu_seconds": peers if fixed_cpu is None else {role: fixed_cpu, **peers},
    }
    out: dict[str, object] = {
        "status": "ok", "saturation": sat, "fixed_rate": fixed,
        "realistic": {"p50_ms": 1.0, "p99_ms": p99, "calls_per_s": 100.0, "calls": 100, "cpu_seconds": {}},
        "storm": {"reconnect_seconds": reconnect, "chargers": storm},
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
    assert pt["proxy_cpu_us_per_call"] == pytest.approx(500.0)
    assert pt["peers_cpu_s_per_1000"] == pytest.approx(0.375)
    assert pt["peers_cpu_us_per_call"] == pytest.approx(375.0)
    verdicts = {t["target"]: t["verdict"] for t in summary["targets"]}
    assert verdicts["pass-through throughput >= 50% of direct"] == "met"
    assert verdicts["translated throughput >= 40% of direct"] == "not measured"
    assert verdicts["passthrough: <= 25 KiB RSS per idle charger"] == "missed"  # 30 KiB
    table = render_table({"scenarios": scenarios, "summary": summary})
    assert "(60%)" in table and "not yet" in table
    assert "chargers + CSMS CPU µs / CALL" in table and " 375 " in table


def test_cpu_per_call_is_compared_with_the_bare_relay_of_the_same_run() -> None:
    """CPU µs per CALL is the proxy's CPU over answered CALLs; the headline ratios divide the gateway's by the bare
    relay's, per stage, and meet their targets at <= 1.0x (pass-through) and <= 1.2x (translating)."""
    scenarios = {
        "direct": _scenario(1000.0, 2.0, None, 1.0),
        "relay": _scenario(800.0, 2.0, 0.2, 1.0, role="relay", fixed_cpu=0.3),
        "passthrough": _scenario(600.0, 3.0, 0.19, 3.0, fixed_cpu=0.33),  # 0.95x closed loop, 1.1x fixed rate
        "translate": _scenario(500.0, 3.0, 0.25, 3.0, fixed_cpu=0.36),  # 1.25x, 1.2x
    }
    summary = summarise(scenarios, Options(idle=[10]))
    assert summary["relay"]["proxy_cpu_us_per_call"] == pytest.approx(200.0)
    assert summary["relay"]["proxy_cpu_us_per_call_fixed_rate"] == pytest.approx(300.0)
    assert "gateway_cpu_s_per_1000" not in summary["relay"]
    assert summary["cpu_vs_relay"]["passthrough"] == {"closed_loop": pytest.approx(0.95),
                                                      "fixed_rate": pytest.approx(1.1), "target_max": 1.0}
    assert summary["cpu_vs_relay"]["translate"] == {"closed_loop": pytest.approx(1.25),
                                                    "fixed_rate": pytest.approx(1.2), "target_max": 1.2}
    verdicts = {t["target"]: t["verdict"] for t in summary["targets"]}
    assert verdicts["pass-through: CPU per CALL <= 1.0x bare relay (closed loop, 200 chargers)"] == "met"
    assert verdicts["pass-through: CPU per CALL <= 1.0x bare relay (1,000 CALLs/s, 200 chargers)"] == "missed"
    assert verdicts["translated: CPU per CALL <= 1.2x bare relay (closed loop, 200 chargers)"] == "missed"
    assert verdicts["translated: CPU per CALL <= 1.2x bare relay (1,000 CALLs/s, 200 chargers)"] == "met"
    table = render_table({"scenarios": scenarios, "summary": summary, "options": {"sat_conns": 200, "rate": 1000}})
    assert "Bare relay" in table and "Fixed rate 1,000/s: answered (CALLs/s)" in table
    assert "190 (0.95x)" in table and "330 (1.10x)" in table and "0.50 / 2.50" in table
    assert "Gateway 1.6->1.6     0.95x | 1.10x; <= 1.0x" in table


def test_without_the_relay_the_relay_targets_are_not_measured() -> None:
    """A run without the relay scenario (--scenarios) cannot give the headline ratio and says why."""
    scenarios = {"passthrough": _scenario(600.0, 3.0, 0.19, 3.0)}
    [target] = [t for t in summarise(scenarios, Options(idle=[10]))["targets"] if "bare relay (closed" in t["target"]]
    assert target["verdict"] == "not measured" and target["note"] == "needs the relay scenario"


@pytest.mark.parametrize(("chargers", "seconds", "verdict"), [(5000, 9.5, "met"), (5000, 12.0, "missed"),
                                                               (5000, None, "missed"), (500, 1.0, "not measured")])
def test_the_storm_target_is_judged_at_5000_chargers(chargers: int, seconds: float | None, verdict: str) -> None:
    """The reconnect storm meets its target when 5,000 chargers are back in under 10 s; a smaller storm is no
    evidence either way."""
    passthrough = _scenario(600.0, 3.0, 0.19, 3.0, storm=chargers)
    passthrough["storm"] = {"reconnect_seconds": seconds, "chargers": chargers, "busy_refusals": 12,
                            "cpu_seconds": {"gateway": 7.5, "csms": 0.5, "loadgen": 2.0}}
    summary = summarise({"passthrough": passthrough}, Options(idle=[10]))
    [target] = [t for t in summary["targets"] if t["target"].startswith("passthrough: 5,000 chargers back")]
    assert target["verdict"] == verdict and target["measured"] == seconds
    assert summary["passthrough"]["reconnect_proxy_cpu_seconds"] == 7.5
    assert summary["passthrough"]["reconnect_busy_refusals"] == 12


def test_throughput_that_drops_log_records_misses_its_target() -> None:
    """A saturation figure reached while the message log dropped records does not count as met."""
    passthrough = _scenario(900.0, 3.0, 0.5, 2.0)
    passthrough["metrics_after_load"] = {"ocpp_gateway_store_records_dropped": 1234.0}
    scenarios = {"direct": _scenario(1000.0, 2.0, None, 1.0), "passthrough": passthrough}
    summary = summarise(scenarios, Options(idle=[10]))
    [target] = [t for t in summary["targets"] if t["target"] == "pass-through throughput >= 50% of direct"]
    assert target["verdict"] == "missed" and "dropped 1,234 records" in target["note"]
    assert "Message-log records dropped" in render_table({"scenarios": scenarios, "summary": summary})


def test_a_proxy_that_falls_behind_the_fixed_rate_gets_no_fixed_rate_verdict() -> None:
    """Answering well under the offered rate means the stage saturated the proxy: its ratio is shown, not judged."""
    translate = _scenario(500.0, 3.0, 0.25, 3.0, fixed_cpu=0.2)
    translate["fixed_rate"]["calls_per_s"] = 850.0  # type: ignore[index]
    scenarios = {"relay": _scenario(800.0, 2.0, 0.2, 1.0, role="relay", fixed_cpu=0.3), "translate": translate}
    summary = summarise(scenarios, Options(idle=[10]))
    assert summary["translate"]["fixed_rate_kept_up"] is False and summary["relay"]["fixed_rate_kept_up"] is True
    [target] = [t for t in summary["targets"]
                if t["target"] == "translated: CPU per CALL <= 1.2x bare relay (1,000 CALLs/s, 200 chargers)"]
    assert target["verdict"] == "not measured" and "translate fell behind" in target["note"]
    assert target["measured"] == pytest.approx(2 / 3)
    assert "850 (behind)" in render_table({"scenarios": scenarios, "summary": summary})
