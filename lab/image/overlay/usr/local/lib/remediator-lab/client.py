#!/usr/bin/python3
"""The lab's clients: 20 requests a second to the webapp's routes through the load balancer (nginx, port 8000).

Each request on its own thread, so that clients keep coming whatever the latency; the backends count and time
what they serve (webapp.py's metrics), which is what the Level 2 alerts and reports read.
"""
import random
import threading
import time
import urllib.error
import urllib.request

URL = "http://127.0.0.1:8000"


def call(route):
    try:
        urllib.request.urlopen(URL + route, timeout=5).read()
    except (urllib.error.URLError, OSError):
        pass            # the backends' own metrics count failures; a client just goes on


# Routes at random: alternating them in step with nginx's round robin would send each route to one backend only.
while True:
    threading.Thread(target=call, args=(random.choice(("/api/orders", "/api/catalog")),), daemon=True).start()
    time.sleep(0.05)
