#!/usr/bin/env bash
# The CSMS outage drill (docs/outage-drill.md): two CSMSs (OCPP 2.0.1 and 1.6) go down, four chargers (1.6 and
# 2.0.1, each behind a CSMS of the other version and of its own) run two charging sessions each, the gateway is
# killed with SIGKILL, then the CSMSs and the gateway start again and the chargers reconnect. Pass: every
# transaction reaches its CSMS exactly once, finished, with no protocol violation, and nothing stays queued.
#
#   tools/outage-drill.sh [WORKDIR]      ports: DRILL_PORT (gateway, default 19100), DRILL_ADMIN (19101),
#                                        DRILL_CSMS201 (18301), DRILL_CSMS16 (18116)
set -uo pipefail
dir=${1:-$(mktemp -d)}
mkdir -p "$dir" && cd "$dir" || exit 2
gw_bin=${OCPP_GATEWAY:-ocpp-gateway}
python=${PYTHON:-python3}
port=${DRILL_PORT:-19100} admin=${DRILL_ADMIN:-19101} c201=${DRILL_CSMS201:-18301} c16=${DRILL_CSMS16:-18116}
chargers=("1.6 CP16a" "2.0.1 CP201a" "1.6 CP16b" "2.0.1 CP201b")  # CP201a and CP16b are routed to the 1.6 CSMS

cat > gateway.yaml <<EOF
listen: {host: 127.0.0.1, port: $port}
admin: {host: 127.0.0.1, port: $admin}
store: sqlite:///$dir/gateway.db
csms:
  v201: {url: "ws://127.0.0.1:$c201/ocpp", ocpp: "2.0.1"}
  v16: {url: "ws://127.0.0.1:$c16/ocpp", ocpp: "1.6"}
default_route: {primary: v201}
chargers:
  CP201a: {route: {primary: v16}}
  CP16b: {route: {primary: v16}}
allow_unknown_chargers: true
workers: 1
logging: {level: warning}
EOF

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT
start() { "$@" & pids+=($!); }
charger() { "$gw_bin" sim charger --ocpp "$1" --url "ws://127.0.0.1:$port/ocpp" --id "$2" "${@:3}"; }
queued() {  # messages waiting in the store's offline queue
    "$python" -c "import sqlite3; print(sqlite3.connect('$dir/gateway.db').execute('SELECT count(*) FROM offline_queue').fetchone()[0])"
}
wait_port() {
    for _ in $(seq 100); do "$python" -c "import socket; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null \
        && return 0; sleep 0.1; done
    echo "nothing listens on port $1" >&2; return 1
}

echo "1. CSMSs and gateway up; the chargers boot and are accepted"
start "$gw_bin" sim csms --ocpp 2.0.1 --port "$c201" -q > csms-201-before.log 2>&1; a201=$!
start "$gw_bin" sim csms --ocpp 1.6 --port "$c16" -q > csms-16-before.log 2>&1; a16=$!
start "$gw_bin" run --config gateway.yaml > gateway-1.log 2>&1; gateway=$!
wait_port "$c201" && wait_port "$c16" && wait_port "$port" || exit 1
for c in "${chargers[@]}"; do charger $c -n 0 -q > /dev/null || { echo "FAIL: boot of $c"; exit 1; }; done

echo "2. Both CSMSs stop; each charger runs 2 charging sessions, answered by the gateway"
kill -INT "$a201" "$a16"; wait "$a201" "$a16"
for c in "${chargers[@]}"; do
    began=$(date +%s%N)
    charger $c -n 2 --meter-interval 0.2 -q > /dev/null || { echo "FAIL: sessions of $c"; exit 1; }
    echo "   $c: 2 sessions in $(( ($(date +%s%N) - began) / 1000000 )) ms"
done
echo "   queued for the CSMSs: $(queued) messages"

echo "3. SIGKILL of the gateway"
kill -9 "$gateway"; wait "$gateway" 2>/dev/null
echo "   still queued in the store: $(queued) messages"

echo "4. CSMSs and gateway start again; the chargers reconnect and stay"
start "$gw_bin" sim csms --ocpp 2.0.1 --port "$c201" -q > csms-201.log 2>&1; b201=$!
start "$gw_bin" sim csms --ocpp 1.6 --port "$c16" -q > csms-16.log 2>&1; b16=$!
start "$gw_bin" run --config gateway.yaml > gateway-2.log 2>&1
wait_port "$c201" && wait_port "$c16" && wait_port "$port" || exit 1
began=$(date +%s%N)
for c in "${chargers[@]}"; do start charger $c -n 0 -q --stay > /dev/null 2>&1; done
for _ in $(seq 300); do [ "$(queued)" = 0 ] && break; sleep 0.1; done
echo "   queue delivered in $(( ($(date +%s%N) - began) / 1000000 )) ms; left: $(queued)"
sleep 1
kill -INT "$b201" "$b16"; wait "$b201" "$b16"

echo "5. What the CSMSs saw"
tail -n 1 csms-201.log csms-16.log
expected="2 chargers, 4 transactions (4 finished), 0 violations"
if [ "$(queued)" = 0 ] && grep -q "$expected" csms-201.log && grep -q "$expected" csms-16.log; then
    echo "PASS: every transaction reached its CSMS once, finished, no violation; nothing left queued"
    exit 0
fi
echo "FAIL: expected '$expected' from each CSMS and an empty queue (logs in $dir)"
exit 1
