#!/usr/bin/env python3
"""bench/nbd_report.py: the "Through the NBD export" section of
docs/PERFORMANCE.md, from the runs of bench/nbd.sh: RESULTS/ROUND.WL.TARGET
plus .json (fio), .copy ("bytes start end" of an nbdcopy) and .cpu ("ticks
hz": the server's CPU time during the run).

  nbd_report.py --one RESULTS/ROUND.WL.TARGET    one line: the run's figure
  nbd_report.py --results DIR --out FRAG ...     the section, as markdown
  nbd_report.py --splice FRAG --into FILE        replace the section in FILE
"""
import argparse
import glob
import os
import sys

from report_util import judge, load, med, med_range, ratio_text, splice, us

HEAD = "## Through the NBD export"

# workload: (label, unit)
WORKLOADS = {
    "copy_out": ("`nbdcopy` of the whole disk out (to `null:`)", "MB/s"),
    "copy_in": ("`nbdcopy --flush` of the whole disk in (from a file in the page cache)", "MB/s"),
    "rand_read": ("random read 4 KiB QD32 (fio, nbd engine)", "IOPS"),
    "rand_write": ("random write 4 KiB QD32 (fio, nbd engine)", "IOPS"),
}
ORDER = ["copy_out", "copy_in", "rand_read", "rand_write"]
# target: column heading
NAMES = {
    "file": "nbdkit file plugin (defaults: cache=default)",
    "file_nc": "nbdkit file plugin, cache=none",
    "qemu": "qemu-nbd --cache=none --aio=io_uring",
    "qemu_def": "qemu-nbd (defaults: writeback, threads)",
    "lunfs": "nbdkit lunfs plugin",
}
TARGETS = ["file", "file_nc", "qemu", "qemu_def"]
# the baselines with a target (issue 13 point 6), then the others
GOALS = [("file", 0.95), ("qemu", 1.0), ("file_nc", None), ("qemu_def", None)]


def read_run(base):
    """(figure, requests (GiB for a copy), server CPU seconds, wall seconds,
    client CPU seconds (fio's own; None for nbdcopy)) of one run, or None"""
    wl = os.path.basename(base).split(".")[1]
    try:
        if wl.startswith("copy"):
            b, s0, s1 = open(base + ".copy").read().split()
            secs = float(s1) - float(s0)
            fig, n, ccpu = int(b) / secs / 1e6, int(b) / 2**30, None
        else:
            doc = load(base + ".json")
            d = "read" if wl == "rand_read" else "write"
            fig = sum(j[d]["iops"] for j in doc["jobs"])
            n = sum(j[d]["total_ios"] for j in doc["jobs"])
            secs = max(j["job_runtime"] for j in doc["jobs"]) / 1e3
            ccpu = sum((j["usr_cpu"] + j["sys_cpu"]) / 100.0 * j["job_runtime"] / 1e3 for j in doc["jobs"])
    except (OSError, ValueError, KeyError):
        return None
    try:
        ticks, hz = (int(x) for x in open(base + ".cpu").read().split())
        cpu = ticks / hz
    except (OSError, ValueError):
        cpu = None
    return fig, n, cpu, secs, ccpu


def cpu_per(wl, run):
    """server CPU: seconds per GiB copied, or µs per request"""
    if not run or run[2] is None or not run[1]:
        return None
    return run[2] / run[1] if wl.startswith("copy") else run[2] * 1e6 / run[1]


def one(base):
    wl = os.path.basename(base).split(".")[1]
    run = read_run(base)
    if not run:
        return "no data"
    c = cpu_per(wl, run)
    s = "%.0f %s" % (run[0], WORKLOADS[wl][1])
    if c is not None:
        s += ", server CPU %s" % (("%.2f s per GiB" % c) if wl.startswith("copy") else "%.1f µs per request" % c)
    return s


def report(a):
    runs = {}  # (wl, target) -> {round: (figure, n, cpu)}
    for p in glob.glob(os.path.join(a.results, "*.cpu")):
        base = p[:-4]
        r, wl, tg = os.path.basename(base).split(".")[:3]
        run = read_run(base)
        if run:
            runs.setdefault((wl, tg), {})[int(r)] = run
    val = {k: {r: v[0] for r, v in rs.items()} for k, rs in runs.items()}
    targets = a.targets.split()

    def paired(wl, btg):
        x, y = val.get((wl, "lunfs"), {}), val.get((wl, btg), {})
        rs = [x[r] / y[r] for r in sorted(x) if r in y and y[r] > 0]
        return (med(rs), rs)

    cols = [t for t in TARGETS if t in targets] + ["lunfs"]
    goals = [(t, g) for t, g in GOALS if t in targets]
    head = "| workload | unit | " + " | ".join(NAMES[t] for t in cols)
    sep = "|---|---|" + "---|" * len(cols)
    for t, g in goals:
        if g is not None:
            head += " | lunfs / %s | target | met" % t
            sep += "---|---|---|"
        else:
            head += " | lunfs / %s" % t
            sep += "---|"
    head += " |"
    rows, missed = [], []
    for wl in ORDER:
        label, unit = WORKLOADS[wl]
        cells = [label, unit] + [med_range(list(val.get((wl, t), {}).values())) for t in cols]
        for t, g in goals:
            x, xs = paired(wl, t)
            cells.append(ratio_text(x, xs, g))
            if g is not None:
                tt, m = judge(x, g)
                cells += [tt, m]
                if m != "met":
                    missed.append("%s vs %s" % (wl, t))
        rows.append("| " + " | ".join(cells) + " |")

    # server CPU per unit of work, and the share of the run the server was busy
    crows = []
    for wl in ORDER:
        unit = "s per GiB" if wl.startswith("copy") else "µs per request"
        cells = [WORKLOADS[wl][0], unit]
        for t in cols:
            c = med(cpu_per(wl, v) for v in runs.get((wl, t), {}).values())
            cells.append("-" if c is None else ("%.2f" % c if wl.startswith("copy") else "%.1f" % c))
        crows.append("| " + " | ".join(cells) + " |")

    def busy(wl, t, i):
        """median share of one CPU: the server's (i=2) or fio's (i=4)"""
        return med(v[i] / v[3] if v[i] is not None and v[3] else None
                   for v in runs.get((wl, t), {}).values())
    brows = []
    for wl in ORDER:
        cells = [WORKLOADS[wl][0]]
        for t in cols:
            b, c = busy(wl, t, 2), busy(wl, t, 4)
            cells.append("-" if b is None else ("%.0f%%" % (b * 100) + ("" if c is None else " + %.0f%%" % (c * 100))))
        brows.append("| " + " | ".join(cells) + " |")

    # the missed targets, with the server's CPU beside the figure
    mrows = []
    for m in missed:
        wl, t = m.split(" vs ")
        cu = "s per GiB" if wl.startswith("copy") else "µs per request"
        cl = med(cpu_per(wl, v) for v in runs.get((wl, "lunfs"), {}).values())
        cb = med(cpu_per(wl, v) for v in runs.get((wl, t), {}).values())
        x, _ = paired(wl, t)
        mrows.append("- %s: lunfs %s %s against %s %s (%s); the server's CPU: lunfs %s, %s %s %s." % (
            WORKLOADS[wl][0], "-" if med(val.get((wl, "lunfs"), {}).values()) is None else "%.0f" % med(val[(wl, "lunfs")].values()),
            WORKLOADS[wl][1], NAMES[t], "-" if med(val.get((wl, t), {}).values()) is None else "%.0f" % med(val[(wl, t)].values()),
            "-" if x is None else ("%.3f×" if x < dict(GOALS)[t] <= round(x, 2) else "%.2f×") % x,
            "-" if cl is None else ("%.2f" % cl if wl.startswith("copy") else "%.1f" % cl),
            t, "-" if cb is None else ("%.2f" % cb if wl.startswith("copy") else "%.1f" % cb), cu))

    cmds = []
    for line in open(a.commands):
        k, v = line.rstrip("\n").split("\t", 1)
        cmds.append("%-10s %s" % (k + ":", v))
    mc = {}
    try:
        for line in open(os.path.join(a.results, "multi_conn")):
            t, v = line.split()
            mc[t] = v
    except OSError:
        pass
    mct = ", ".join("%s %s" % (t, mc.get(t, "?")) for t in cols)
    n_rounds = min((len(v) for v in val.values()), default=0)
    fails = "" if a.fails == "0" else "  **%s runs failed** (see the bench's output); their rounds are missing above." % a.fails
    met_all = not missed
    text = """%(HEAD)s

What a user would pick instead of lunfs's NBD export (`nbd/nbdkit-lunfs-plugin.c`), serving the same %(size)s disk over a Unix socket, in one run: nbdkit's own `file` plugin and `qemu-nbd` on a raw image file of the same host filesystem.  Written by `bench/nbd.sh` and `bench/nbd_report.py` (part of `make bench`; alone: `make bench-nbd`, which replaces only this section).  These figures were produced by:

```sh
%(cmd)s
```

| | |
|---|---|
| date | %(date)s |
| source | %(rev)s |
| host filesystem | %(fs)s, in %(bench_dir)s |
| tools | %(versions)s |
| rounds | %(rounds)s, round-robin (every workload on every server in turn, a, b, c, …, then the next workload; then the next round); every server started for one run and stopped after it |
| load average | %(load0)s at the start, %(load1)s at the end (the machine's %(ncpu)s CPUs are shared with other work: absolute figures are noisy; the ratios compare runs seconds apart) |
| run time | %(run_secs)s s measuring, after %(prep_secs)s s preparing |
| multi-conn (as `nbdinfo` sees it; `nbdcopy` opens 4 connections where it is offered, else 1) | %(mct)s |

- **raw image** (the file plugin and qemu-nbd): a %(size)s file on the host filesystem, written in full with `dd oflag=direct` first.
- **lunfs**: a %(img_mib)s MiB image file on the same host filesystem, written in full first (a LUN has every block), then `mkfs.lunfs %(mkfs)s`, `lunfs-cluster fill` (zeros into the holes mkfs left in the metadata regions); mounted with `mount.lunfs -o host=bench-nbd` once to write `/vm01/disk.img` (%(size)s) in full with `dd oflag=direct` (eager: every block mapped), then unmounted; the plugin serves that file as the same host.  The plugin's device is lunfs's file backend, which opens the image with `O_DIRECT` (`dev/file.c`): no host page cache.
- **Cache settings.**  The issue's baselines are the `file` plugin with its defaults (`cache=default`, `fadvise=normal`: every read and write goes through the host's page cache, and a write is done when it is in the cache) and `qemu-nbd`; for `qemu-nbd` the target is judged on `--cache=none --aio=io_uring`, which is what the lunfs device does (`O_DIRECT`, io_uring).  For comparison: the `file` plugin with `cache=none` (nbdkit %(nbdkit_ver)s has no `O_DIRECT` mode; `cache=none` drops what was read or written from the page cache after each request and starts the write-back of written ranges at once), and `qemu-nbd` with its defaults (`--cache=writeback --aio=threads`: the page cache).  Every server runs with its default threads (nbdkit: 16 per connection for a parallel plugin).
- **Before every run** the two image files are synced (`sync -f`) and dropped from the host's page cache (`dd iflag=nocache count=0`, only those files): each run starts cold, and no write-back of one run falls into the next.  Within a run, a page-cache server keeps what it reads and writes: the random writes of `cache=default` and of `qemu-nbd`'s defaults end in the page cache (no flush is sent), the copy in ends with a flush (`--flush`), so all its data is on the disk when it finishes.
- Each figure is the median over the rounds with the lowest and highest in brackets; a ratio is the median over the rounds of the two runs' ratio within a round.  Targets (issue 13 point 6): lunfs ≥ 0.95× the `file` plugin, ≥ 1.0× `qemu-nbd`.

| | command line (`$W`: the bench's directory) |
|---|---|
%(cmdrows)s

%(headrow)s
%(sep)s
%(rows)s

All targets met: **%(met_all)s**%(missed)s.%(fails)s

Where the time goes: the server process's CPU time (utime + stime of all its threads, from `/proc/PID/stat` before and after each run), the median over the rounds; per GiB copied, or per 4 KiB request.  This is the NBD server's own work (the protocol, the plugin or qemu's block layer, the system calls); the kernel's work for the host filesystem in other contexts (page-cache write-back, direct-I/O completion) is not counted.  With %(ncpu)s CPUs shared by the client and the server, a server that costs C µs per request cannot exceed about %(ncpu)s 000 000 / C requests per second, less what the client takes.

| workload | unit | %(cpuhead)s |
|---|---|%(cpusep)s
%(crows)s

The share of one CPU the server kept busy during the run (CPU time / wall time), and for the fio runs `+` fio's own share (its usr + sys): near %(ncpu)s00%% together, the machine's CPUs, not the storage, set the rate.

| workload | %(cpuhead)s |
|---|%(cpusep)s
%(brows)s

How each server spends a request, for reading these tables:

- **lunfs plugin**: nbdkit hands each request to one of its threads (16 per connection by default) and the plugin calls `lunfs_pread`/`lunfs_pwrite` (`fs/data.c`): the mapping from the open file's cache under that file's map lock (`map_cached`; no volume-wide lock), then one synchronous `pread`/`pwrite` on the `O_DIRECT` image (`dev/file.c`).  nbdkit 1.32's request buffers are not aligned to 4 KiB (seen with gdb on `nl_pread`: the buffer's address modulo 4096 was 3024 or 3776 on every request), so every request also goes through the library's per-thread bounce buffer (`read_range`/`write_range`: a copy).  At most 16 device requests per connection are in flight, however deep the client's queue.
- **qemu-nbd --cache=none --aio=io_uring**: one thread; coroutines submit every request at once through io_uring into its own aligned buffers, `O_DIRECT`, no copy.
- **file plugin, cache=default**, and **qemu-nbd's defaults**: buffered `pread`/`pwrite`: a read not in the page cache waits for the device (with readahead), a write completes once copied into the page cache; the device sees most of the random writes only after the run (the bench syncs before the next run, untimed), and the copy in at its final flush.  An `O_DIRECT` server answers each write from the device: against a page-cache server with no flush the comparison is of the page cache, not of the export.
- **file plugin, cache=none**: buffered I/O as above; after each read `posix_fadvise(DONTNEED)` of its range, after each write `sync_file_range(SYNC_FILE_RANGE_WRITE)` of its range (seen with strace), the write-back waited for and the pages dropped a few writes later: a write still completes before it reaches the device, but the write-back runs during the run.  The closest to direct I/O that nbdkit 1.32's file plugin offers.
%(mtext)s""" % dict(
        HEAD=HEAD, cmd=a.cmd, date=a.date, rev=a.rev, fs=a.fs, bench_dir=a.bench_dir,
        versions=a.versions, rounds=a.rounds, load0=a.load0, load1=a.load1, ncpu=os.cpu_count(),
        run_secs=a.run_secs, prep_secs=a.prep_secs, mct=mct, size=a.size, img_mib=a.img_mib,
        mkfs=a.mkfs, nbdkit_ver=a.versions.split(";")[0].replace("nbdkit ", "").strip(),
        cmdrows="\n".join("| %s | `%s` |" % (c.split(":", 1)[0], c.split(":", 1)[1].strip()) for c in cmds),
        headrow=head, sep=sep, rows="\n".join(rows), met_all="yes" if met_all else "no",
        missed="" if met_all else " (missed: %s)" % ", ".join(missed), fails=fails,
        cpuhead=" | ".join(NAMES[t] for t in cols), cpusep="---|" * len(cols), crows="\n".join(crows),
        brows="\n".join(brows),
        mtext="" if not mrows else "\nThe missed targets, the figures (medians) and the server's CPU per unit of work:\n\n" + "\n".join(mrows) + "\n")
    if n_rounds < int(a.rounds):
        text += "\nOnly %d of %s rounds have every run.\n" % (n_rounds, a.rounds)
    if a.notes and os.path.exists(a.notes):
        text += "\n" + open(a.notes).read()
    with open(a.out, "w") as f:
        f.write(text)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--one")
    p.add_argument("--splice")
    p.add_argument("--into")
    p.add_argument("--results")
    p.add_argument("--out")
    p.add_argument("--commands")
    p.add_argument("--notes")
    for k in ("cmd", "rev", "date", "load0", "load1", "prep-secs", "run-secs", "rounds", "secs",
              "size", "img-mib", "mkfs", "fs", "bench-dir", "work", "versions", "targets", "fails"):
        p.add_argument("--" + k, default="?")
    a = p.parse_args()
    if a.one:
        print(one(a.one))
    elif a.splice:
        splice(a.splice, a.into, HEAD)
    else:
        report(a)


if __name__ == "__main__":
    sys.exit(main())
