#!/usr/bin/env bash
# Runs schemathesis (property-based API testing, from PyPI) against a real `stepwise serve`
# and its own OpenAPI document: every answer must match the document (status, content type,
# schema) and none may be a server error. Called by .ci/run; runnable by hand:
#
#   tests/schemathesis/run.sh target/debug/stepwise path/to/testbed.wasm [seconds]
#
# Needs `schemathesis` on PATH (or SCHEMATHESIS=/path/to/schemathesis) and curl.
set -euo pipefail

bin=$(realpath "$1")
component=$(realpath "$2")
budget=${3:-120}
st=${SCHEMATHESIS:-schemathesis}
admin=sw_schemathesis_admin
metrics=sw_schemathesis_metrics

work=$(mktemp -d)
log="$work/serve.log"
cleanup() {
    [[ -n "${pid:-}" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/stepwise.toml" <<TOML
listen = "127.0.0.1:0"
data = "$work/data"
admin_token = "$admin"
metrics_token = "$metrics"
secrets_key = "$("$bin" secrets keygen)"
TOML

STEPWISE_LOG=warn,stepwise=info "$bin" serve --config "$work/stepwise.toml" 2>"$log" &
pid=$!
url=""
for _ in $(seq 1 600); do
    url=$(grep -o 'stepwise listening on http://[0-9.:]*' "$log" | head -1 | sed 's/.* on //') || true
    [[ -n "$url" ]] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "the server exited"; exit 1; }
    sleep 0.1
done
[[ -n "$url" ]] || { cat "$log"; echo "the server did not start"; exit 1; }

# A tenant with a deployed module, a run and a queue setting, so routes have data to show.
token=$(curl -sf -X POST "$url/v1/tenants" -H "authorization: Bearer $admin" \
    -H 'content-type: application/json' -d '{"name": "fuzz"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
curl -sf -X POST "$url/v1/modules" -H "authorization: Bearer $token" \
    -H 'content-type: application/wasm' --data-binary @"$component" >/dev/null
curl -sf -X POST "$url/v1/queues/q/jobs" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' \
    -d '{"job": "echo", "payload": {"message": "m", "count": 1}, "idempotency_key": "k"}' >/dev/null

# The tenant's routes with a tenant token; then the operator's routes with theirs.
fuzz() {
    local token=$1 seconds=$2
    shift 2
    "$st" run "$url/v1/openapi.json" \
        --header "Authorization: Bearer $token" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
        --max-time "$seconds" \
        --workers 2 \
        --suppress-health-check all \
        --request-timeout 30 \
        --seed 1 \
        --phases examples,fuzzing,stateful \
        "$@" \
        || { echo "== server log (tail)"; tail -50 "$log"; exit 1; }
}
fuzz "$token" "$budget"
fuzz "$admin" 15 --include-path /v1/tenants
fuzz "$metrics" 15 --include-path /metrics
if grep -q panicked "$log"; then
    echo "the server log shows a panic:"; grep -A5 panicked "$log"; exit 1
fi
