#!/usr/bin/env python3
"""A small QMP client (python3 stdlib only) for the integration tests.

qmp.py SOCKET COMMAND...

Connects to QEMU's QMP unix socket (waiting up to 10 s for it to appear),
negotiates capabilities, then runs each COMMAND in order:

  NAME                    a command without arguments, e.g. query-status
  NAME '{"k": v, ...}'    a command with JSON arguments (the next word)
  wait:EVENT[:SECONDS]    waits for an asynchronous event (default 60 s)
  wait-migration[:SECONDS]
                          polls query-migrate every 0.1 s until the status is
                          completed (or failed/cancelled: exit 1)
  sleep:SECONDS

Every reply and event is printed as one JSON line ("<-" for replies, "ev"
for events) with a millisecond timestamp (CLOCK_REALTIME, ms) in front.
Exit status 1 on an error reply or a timeout.  Usable as a module: Qmp(path).
"""
import json
import os
import socket
import sys
import time


def now_ms():
    return int(time.time() * 1000)


class Qmp:
    def __init__(self, path, timeout=10.0):
        t0 = time.time()
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.time() - t0 > timeout:
                    raise
                time.sleep(0.05)
        self.f = self.s.makefile("rwb", buffering=0)
        self.events = []
        self.greeting = self._read()
        self.cmd("qmp_capabilities")

    def _read(self, timeout=None):
        self.s.settimeout(timeout)
        line = self.f.readline()
        if not line:
            raise EOFError("QMP socket closed")
        return json.loads(line)

    def cmd(self, name, args=None, timeout=60.0):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read(timeout)
            if "event" in r:
                self.events.append(r)
                continue
            return r

    def wait_event(self, name, timeout=60.0):
        deadline = time.time() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name:
                    return self.events.pop(i)
            left = deadline - time.time()
            if left <= 0:
                return None
            try:
                r = self._read(left)
            except socket.timeout:
                return None
            if "event" in r:
                self.events.append(r)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    q = Qmp(argv[1])
    out = sys.stdout
    args = argv[2:]
    i = 0
    rc = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a.startswith("sleep:"):
            time.sleep(float(a.split(":")[1]))
            continue
        if a.startswith("wait:"):
            parts = a.split(":")
            e = q.wait_event(parts[1], float(parts[2]) if len(parts) > 2 else 60.0)
            if e is None:
                print("%d timeout waiting for %s" % (now_ms(), parts[1]), file=out, flush=True)
                return 1
            print("%d ev %s" % (now_ms(), json.dumps(e)), file=out, flush=True)
            continue
        if a.startswith("wait-migration"):
            parts = a.split(":")
            deadline = time.time() + (float(parts[1]) if len(parts) > 1 else 60.0)
            while True:
                r = q.cmd("query-migrate")
                st = r.get("return", {}).get("status")
                if st in ("completed", "failed", "cancelled") or time.time() > deadline:
                    print("%d <- %s" % (now_ms(), json.dumps(r)), file=out, flush=True)
                    if st != "completed":
                        return 1
                    break
                time.sleep(0.1)
            continue
        cargs = None
        if i < len(args) and args[i].startswith("{"):
            cargs = json.loads(args[i])
            i += 1
        r = q.cmd(a, cargs)
        print("%d <- %s %s" % (now_ms(), a, json.dumps(r)), file=out, flush=True)
        if "error" in r:
            rc = 1
    for e in q.events:
        print("%d ev %s" % (now_ms(), json.dumps(e)), file=out, flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
