#!/usr/bin/python3
"""A worker@N instance: takes one job file a second from the webapp's queue."""
import os
import sys
import time

QUEUE_DIR = os.environ.get("WEBAPP_QUEUE_DIR", "/var/spool/webapp/queue")
name = sys.argv[1] if len(sys.argv) > 1 else "0"
while True:
    try:
        jobs = sorted(os.listdir(QUEUE_DIR))
    except OSError:
        jobs = []
    for job in jobs[:1]:
        try:
            os.unlink(os.path.join(QUEUE_DIR, job))
        except OSError:
            pass
    time.sleep(1)
