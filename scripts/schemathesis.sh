#!/usr/bin/env bash
# schemathesis against a live `kairos server` (auth on, an admin token), driven by the
# server's own /openapi.json. Bounded in time; a failure fails CI.
#
# Usage: scripts/schemathesis.sh KAIROS_BIN [SECONDS]
#
# Checks: all (a long-poll lease may take its `wait`, up to 60 s, so the response time
# limit is 75 s) but two, which test what JSON Schema cannot say here:
# - positive_data_acceptance: schema-valid bodies the server rightly refuses with 422
#   (a cron expression or an IANA zone name that does not exist, run_at together with
#   delay, a wait over 60 s as a duration string);
# - ensure_resource_availability: an enqueue repeated with the same Idempotency-Key
#   answers the first job again, by contract, even after that job was deleted.
set -euo pipefail
bin="$1"
seconds="${2:-120}"
venv="${KAIROS_ST_VENV:-$HOME/.cache/kairos/venv-schemathesis}"
version="4.32.5"
if [ ! -x "$venv/bin/st" ] || ! "$venv/bin/pip" show -q schemathesis 2>/dev/null | grep -q "^Version: $version$"; then
    echo "== installing schemathesis $version in $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "schemathesis==$version"
fi
data="$(mktemp -d)"
port_file="$data/port"
export KAIROS_JWT_SECRET="schemathesis-secret-$(date +%s%N)-0123456789abcdef"
# An ephemeral port: ask the kernel for a free one.
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
KAIROS_LOG=warn "$bin" server --listen "127.0.0.1:$port" --data-dir "$data/store" \
    > "$data/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break
    sleep 0.1
done
# /v1/events/stream and /v1/notifications/stream are excluded: a Server-Sent Events
# answer never ends by itself, so
# every call to it would run into the request timeout (its tests are in tests/it/events.rs).
token="$("$bin" token create --role admin --ttl 1d)"
echo "== schemathesis for ${seconds}s against 127.0.0.1:$port"
# CPython 3.11.7's ast module can raise "SystemError: AST constructor recursion depth
# mismatch" when hypothesis describes a lambda deep in schemathesis's generators (seen
# once in CI, on POST /v1/ack, passing on the rerun with the same seed): a crash of the
# tool, not a finding about the server. That one error, and only it, gets one more run.
run_st() {
    "$venv/bin/st" --config-file "$(dirname "$0")/schemathesis.toml" run "http://127.0.0.1:$port/openapi.json" \
        -H "Authorization: Bearer $token" \
        --checks all \
        --exclude-checks positive_data_acceptance,ensure_resource_availability \
        --exclude-path /v1/events/stream \
        --exclude-path /v1/notifications/stream \
        --max-time "$seconds" \
        --workers 2 \
        --request-timeout 70 \
        --max-response-time 75 \
        --seed 1 \
        --no-color
}
log="$data/st.log"
if ! run_st 2>&1 | tee "$log"; then
    if grep -q "AST constructor recursion depth mismatch" "$log"; then
        echo "== schemathesis crashed inside CPython's ast module (not a finding); running it once more"
        run_st
    else
        exit 1
    fi
fi
