#!/usr/bin/env bash
# The tasks feature under load, against a live `kairos server` (docs/performance.md,
# "Tasks: reminders on time, reads under load"):
# - reminder lateness: N tasks due over a few seconds; for each, how long after its
#   remind time its notification was made (the server's clocks), p50/p95/p99/max;
# - reads: wrk on GET /v1/tasks/{id} (random ids) and GET /v1/tasks (a 50-task page) at
#   30 and 300 connections, p50/p95/p99 and requests/s.
#
# Usage: scripts/bench-tasks.sh KAIROS_BIN [--database-url URL]   (needs wrk, python3)
set -euo pipefail
bin="$1"
shift
data="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
KAIROS_LOG=warn "$bin" server --listen "127.0.0.1:$port" --data-dir "$data/store" "$@" \
    > "$data/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break
    sleep 0.1
done
base="http://127.0.0.1:$port"

echo "== reminder lateness: 200 tasks due over 4 s"
python3 - "$base" "$data/ids.txt" <<'PY'
import json, sys, time, urllib.request, datetime as dt
base, ids_file = sys.argv[1], sys.argv[2]
def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")
def ts(s):
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
start = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)
tasks = {}
for i in range(200):
    due = (start + dt.timedelta(milliseconds=20 * i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    t = call("POST", "/v1/tasks", {"title": f"task {i}", "due_at": due})
    tasks[t["id"]] = t
time.sleep(max(0, (start - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 4 + 1)
made = call("GET", "/v1/notifications?limit=500")["notifications"]
late = sorted((ts(n["created_at"]) - ts(tasks[n["task_id"]]["remind_at"])).total_seconds() * 1000
              for n in made if n["task_id"] in tasks)
def pct(p):
    return late[min(len(late) - 1, int(len(late) * p / 100))]
print(f"notifications {len(late)}/{len(tasks)}; late ms p50 {pct(50):.1f} p95 {pct(95):.1f} "
      f"p99 {pct(99):.1f} max {late[-1]:.1f}")
# 1,000 more tasks for the reads, due far ahead.
ids = list(tasks)
for i in range(1000):
    t = call("POST", "/v1/tasks", {"title": f"read {i}", "due_at": f"2030-01-01T00:{i // 60 % 60:02}:{i % 60:02}Z"})
    ids.append(t["id"])
open(ids_file, "w").write("\n".join(ids) + "\n")
PY

cat > "$data/one.lua" <<LUA
local ids = {}
for line in io.lines("$data/ids.txt") do ids[#ids + 1] = line end
request = function()
  return wrk.format("GET", "/v1/tasks/" .. ids[math.random(#ids)])
end
LUA
cat > "$data/report.lua" <<'LUA'
done = function(summary, latency, requests)
  io.write(string.format("p50 %.2f ms  p95 %.2f ms  p99 %.2f ms  %.0f requests/s  errors %d\n",
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.requests / (summary.duration / 1e6),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
LUA
cat "$data/report.lua" >> "$data/one.lua"
for c in 30 300; do
    echo "== GET /v1/tasks/{id}, $c connections"
    wrk -t2 -c"$c" -d10s -s "$data/one.lua" "$base" | tail -1
    echo "== GET /v1/tasks?limit=50, $c connections"
    wrk -t2 -c"$c" -d10s -s "$data/report.lua" "$base/v1/tasks?limit=50" | tail -1
done
