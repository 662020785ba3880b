#!/usr/bin/python3
"""The lab's webapp: a tiny HTTP service with a DB connection pool to exhaust and reset.

GET  /health                 200 while the app runs
GET  /metrics                Prometheus text: pool gauge, resets, queue depth, version, log dir
                             size, whether this release is listed as broken (drills)
POST /admin/pool/reset       empty the connection pool (what reset_db_pool calls)
POST /admin/pool/exhaust     fault injection for drills: fill the pool
GET  /api/orders, /api/catalog  the app's routes: request latency (histogram) and status codes are exported
POST /admin/fault/<name>     fault injection for the Level 2 drills (`webapp-fault` posts these):
                             slow   requests wait for a DB connection (the pool is 95% used)
                             errors /api/orders answers 502 and logs the upstream that refused it
                             leak   the process grows by about 2 MB a second (up to 300 MB)
                             broken every route and /health answer 500 (a backend to take out of rotation)
                             clear  every fault off, the leaked memory freed
SIGHUP                       same as /admin/pool/reset (what `systemctl reload` sends)

The lab's clients (client.py) call the routes through nginx, which balances them over webapp and api-gateway.
"""
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("WEBAPP_PORT", "8080"))
POOL_SIZE = int(os.environ.get("WEBAPP_POOL_SIZE", "20"))
QUEUE_DIR = os.environ.get("WEBAPP_QUEUE_DIR", "/var/spool/webapp/queue")
LOG_FILE = os.environ.get("WEBAPP_LOG", "/var/log/webapp/access.log")
LOG_DIR = os.environ.get("WEBAPP_LOG_DIR", "/var/log/webapp")
# Fault injection for drills: a release listed here is "bad" (rollback_release's drill).
BROKEN_RELEASES = os.environ.get("WEBAPP_BROKEN_RELEASES", "/etc/webapp/broken-releases")
VERSION = open(os.path.join(os.path.dirname(os.path.realpath(__file__)), "VERSION")).read().strip()

state = {"in_use": 0, "resets": 0}
faults = {"slow": False, "errors": False, "leak": False, "broken": False}
leaked = []
lock = threading.Lock()
ROUTES = ("/api/orders", "/api/catalog")
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
requests = {}                                   # (route, code) -> count
durations = {r: [0] * (len(BUCKETS) + 1) for r in ROUTES}   # per bucket, the last is +Inf
duration_sum = dict.fromkeys(ROUTES, 0.0)


def reset_pool(*_):
    with lock:
        state["in_use"] = 0
        state["resets"] += 1
        faults["slow"] = False       # the connections requests waited for are free again


def handle_api(route):
    """One request to a route: (status code, body). Counted and timed like a real handler would be."""
    started = time.monotonic()
    if faults["slow"]:
        time.sleep(0.5)              # waiting for a free DB connection
    if faults["broken"]:
        code, body = 500, {"error": "internal error"}
        print(f"<3>ERROR {route}: handler crashed: the release cache is corrupt", file=sys.stderr, flush=True)
    elif faults["errors"] and route == "/api/orders":
        code, body = 502, {"error": "upstream payments-api refused the connection"}
        # "<3>" is journald's priority prefix: the line is logged as an error (priority 3)
        print(f"<3>ERROR {route}: upstream payments-api refused the connection (10.0.3.7:9090)", file=sys.stderr, flush=True)
    else:
        code, body = 200, {"route": route, "items": 3}
    took = time.monotonic() - started
    with lock:
        requests[(route, code)] = requests.get((route, code), 0) + 1
        i = next((n for n, le in enumerate(BUCKETS) if took <= le), len(BUCKETS))
        durations[route][i] += 1
        duration_sum[route] += took
    return code, body


def leaking():
    while True:
        if faults["leak"] and len(leaked) < 600:
            leaked.append(bytearray(512 * 1024))   # zero pages: touch them so the RSS grows
            leaked[-1][::4096] = b"x" * len(leaked[-1][::4096])
        time.sleep(0.25)


def resident_bytes():
    try:
        with open("/proc/self/status") as fh:
            kb = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
        return kb * 1024
    except (OSError, StopIteration, ValueError):
        return 0


def set_fault(name):
    with lock:
        if name == "clear":
            for key in faults:
                faults[key] = False
            leaked.clear()
            state["in_use"] = 0
        elif name in faults:
            faults[name] = True
            if name == "slow":
                state["in_use"] = POOL_SIZE - 1
        else:
            return False
    return True


def http_metrics():
    lines = ["# TYPE webapp_requests_total counter"]
    lines += [f'webapp_requests_total{{route="{r}",code="{c}"}} {n}' for (r, c), n in sorted(requests.items())]
    lines.append("# TYPE webapp_request_duration_seconds histogram")
    for route in ROUTES:
        total = 0
        for le, n in zip((*map(str, BUCKETS), "+Inf"), durations[route], strict=True):
            total += n
            lines.append(f'webapp_request_duration_seconds_bucket{{route="{route}",le="{le}"}} {total}')
        lines.append(f'webapp_request_duration_seconds_sum{{route="{route}"}} {duration_sum[route]:.6f}')
        lines.append(f'webapp_request_duration_seconds_count{{route="{route}"}} {total}')
    lines += ["# TYPE webapp_process_resident_bytes gauge", f"webapp_process_resident_bytes {resident_bytes()}"]
    return lines


def log_dir_bytes():
    total = 0
    for root, _dirs, files in os.walk(LOG_DIR):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def release_broken():
    try:
        with open(BROKEN_RELEASES) as fh:
            return int(VERSION in fh.read().split())
    except OSError:
        return 0


def queue_depth():
    try:
        return len(os.listdir(QUEUE_DIR))
    except OSError:
        return 0


class Handler(BaseHTTPRequestHandler):
    def _send(self, code, body, ctype="application/json"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            if faults["broken"]:
                self._send(500, json.dumps({"status": "broken", "version": VERSION}))
            else:
                self._send(200, json.dumps({"status": "ok", "version": VERSION}))
        elif self.path == "/metrics":
            with lock:
                lines = [
                    "# TYPE webapp_up gauge", "webapp_up 1",
                    "# TYPE webapp_db_pool_size gauge", f"webapp_db_pool_size {POOL_SIZE}",
                    "# TYPE webapp_db_pool_in_use gauge", f"webapp_db_pool_in_use {state['in_use']}",
                    "# TYPE webapp_db_pool_resets_total counter",
                    f"webapp_db_pool_resets_total {state['resets']}",
                    "# TYPE webapp_queue_depth gauge", f"webapp_queue_depth {queue_depth()}",
                    "# TYPE webapp_version_info gauge", f'webapp_version_info{{version="{VERSION}"}} 1',
                    "# TYPE webapp_log_dir_bytes gauge", f"webapp_log_dir_bytes {log_dir_bytes()}",
                    "# TYPE webapp_release_broken gauge",
                    f'webapp_release_broken{{version="{VERSION}"}} {release_broken()}',
                    *http_metrics(),
                ]
            self._send(200, "\n".join(lines) + "\n", "text/plain; version=0.0.4")
        elif self.path in ROUTES:
            code, body = handle_api(self.path)
            self._send(code, json.dumps(body))
        elif self.path == "/admin/pool":
            with lock:
                self._send(200, json.dumps({"size": POOL_SIZE, **state}))
        else:
            self._send(404, json.dumps({"error": "not found"}))

    def do_POST(self):
        if self.path == "/admin/pool/reset":
            reset_pool()
            self._send(200, json.dumps({"reset": True}))
        elif self.path == "/admin/pool/exhaust":
            with lock:
                state["in_use"] = POOL_SIZE
            self._send(200, json.dumps({"exhausted": True}))
        elif self.path.startswith("/admin/fault/") and set_fault(self.path.rsplit("/", 1)[1]):
            self._send(200, json.dumps({"faults": faults}))
        else:
            self._send(404, json.dumps({"error": "not found"}))

    def log_message(self, fmt, *args):
        try:
            with open(LOG_FILE, "a") as fh:
                fh.write(f"{self.log_date_time_string()} {fmt % args}\n")
        except OSError:
            pass


class Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5, which the lab clients' 20 requests a second can overflow on a busy
    # machine: a dropped connection past nginx's 1 s connect timeout marks the one backend in rotation failed, and
    # a request answers 502 that no fault made (Molecule nginx_upstream once failed so in CI). A real server's backlog.
    request_queue_size = 128


if __name__ == "__main__":
    signal.signal(signal.SIGHUP, reset_pool)
    threading.Thread(target=leaking, daemon=True).start()
    Server(("0.0.0.0", PORT), Handler).serve_forever()
