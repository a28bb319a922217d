"""A Kairos worker in plain Python (standard library only, no SDK).

Leases jobs over HTTP, runs them, acks them. Run: python3 examples/python/worker.py
Reads KAIROS_SERVER (default http://127.0.0.1:7676), KAIROS_QUEUE (default "default")
and, for a server with auth on, KAIROS_TOKEN (a worker token).
"""
import json, os, socket, time, urllib.error, urllib.request

SERVER = os.environ.get("KAIROS_SERVER", "http://127.0.0.1:7676").rstrip("/")
QUEUE = os.environ.get("KAIROS_QUEUE", "default")
WORKER = f"python-{socket.gethostname()}-{os.getpid()}"
HEADERS = {"content-type": "application/json"}
if os.environ.get("KAIROS_TOKEN"):
    HEADERS["authorization"] = "Bearer " + os.environ["KAIROS_TOKEN"]


def post(path, body, timeout=30):
    req = urllib.request.Request(SERVER + path, json.dumps(body).encode(), HEADERS)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.load(resp)


def handle(job):
    """The work itself: here, echo the payload back as the result."""
    return {"echo": job["payload"], "kind": job["kind"]}


while True:
    try:
        leased = post("/v1/lease", {"queues": [QUEUE], "worker": WORKER, "max": 10, "wait": "10s"}, 20)
    except (urllib.error.URLError, OSError) as e:
        print(f"lease failed ({e}); retrying in 1 s", flush=True)
        time.sleep(1)
        continue
    results = []
    for job in leased["jobs"]:
        item = {"id": job["id"], "lease_token": job["lease_token"]}
        try:
            item.update(outcome="completed", result=handle(job))
        except Exception as e:  # a failed attempt: retried by the job's backoff
            item.update(outcome="failed", error=f"{type(e).__name__}: {e}")
        results.append(item)
    if results:
        post("/v1/ack", {"worker": WORKER, "results": results})
