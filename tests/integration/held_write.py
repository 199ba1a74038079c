#!/usr/bin/env python3
# held_write.py PATH DIR FIRST LATE: the writer of the frozen-host tests.
# Opens PATH (creating it); unless FIRST is "-", writes the bytes of the
# file FIRST at offset 0 and fsyncs; creates DIR/ready; waits for DIR/go;
# then writes the bytes of the file LATE at offset 0 (in place) and fsyncs.
# DIR/result gets "ok", or "ERRNO-NAME OP" for the call that failed.
import errno, os, sys, time

path, d, first, late = sys.argv[1:]
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
if first != "-":
    os.pwrite(fd, open(first, "rb").read(), 0)
    os.fsync(fd)
open(os.path.join(d, "ready"), "w").close()
while not os.path.exists(os.path.join(d, "go")):
    time.sleep(0.01)
op = "pwrite"
try:
    os.pwrite(fd, open(late, "rb").read(), 0)
    op = "fsync"
    os.fsync(fd)
    r = "ok"
except OSError as e:
    r = "%s %s" % (errno.errorcode.get(e.errno, e.errno), op)
open(os.path.join(d, "result"), "w").write(r + "\n")
