#!/usr/bin/python3
"""The lab's webapp: a tiny HTTP service with a DB connection pool to exhaust and reset.

GET  /health                 200 while the app runs
GET  /metrics                Prometheus text: pool gauge, resets, queue depth, version, log dir
                             size, whether this release is listed as broken (drills)
POST /admin/pool/reset       empty the connection pool (what reset_db_pool calls)
POST /admin/pool/exhaust     fault injection for drills: fill the pool
SIGHUP                       same as /admin/pool/reset (what `systemctl reload` sends)
"""
import json
import os
import signal
import threading
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
lock = threading.Lock()


def reset_pool(*_):
    with lock:
        state["in_use"] = 0
        state["resets"] += 1


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
                ]
            self._send(200, "\n".join(lines) + "\n", "text/plain; version=0.0.4")
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
        else:
            self._send(404, json.dumps({"error": "not found"}))

    def log_message(self, fmt, *args):
        try:
            with open(LOG_FILE, "a") as fh:
                fh.write(f"{self.log_date_time_string()} {fmt % args}\n")
        except OSError:
            pass


if __name__ == "__main__":
    signal.signal(signal.SIGHUP, reset_pool)
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
