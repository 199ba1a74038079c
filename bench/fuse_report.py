#!/usr/bin/env python3
"""bench/fuse_report.py: the "Through the FUSE mount" section of
docs/PERFORMANCE.md, from the fio --output-format=json files of bench/fuse.sh
(RESULTS/ROUND.WORKLOAD.TARGET.json).

  fuse_report.py --one FILE.json                 one line: the run's figure
  fuse_report.py --results DIR --out FRAG ...    the section, as markdown
  fuse_report.py --splice FRAG --into FILE       replace the section in FILE
"""
import argparse
import glob
import os
import statistics
import sys

from report_util import judge, load, med, med_range, ratio_text, splice, us

HEAD = "## Through the FUSE mount"

# workload: (label, unit, direction whose latency is shown,
#            target vs raw, target vs ext4 on loop)
WORKLOADS = {
    "seq_write": ("sequential write 1 MiB QD8", "MB/s", "write", 0.85, 1.0),
    "seq_read": ("sequential read 1 MiB QD8", "MB/s", "read", 0.85, 1.0),
    "rand_read": ("random read 4 KiB QD32", "IOPS", "read", 0.5, 0.7),
    "rand_write": ("random write 4 KiB QD32", "IOPS", "write", 0.5, 0.7),
    "vm4": (None, "IOPS", "read", 0.5, None),
    "thin_write": ("first write into a thin file, 1 MiB QD8 (raw: the prefilled file, seq write)",
                   "MB/s", "write", 0.7, None),
    "lat_read": ("random read 4 KiB QD1 (latency probe)", "IOPS", "read", None, None),
    "lat_write": ("random write 4 KiB QD1 (latency probe)", "IOPS", "write", None, None),
}
ORDER = ["seq_write", "seq_read", "rand_read", "rand_write", "vm4", "thin_write",
         "lat_read", "lat_write"]
TARGETS = ["raw", "lunfs", "ext4"]




def figure(doc, wl):
    """MB/s (sequential) or IOPS (the rest), summed over jobs and directions."""
    unit = WORKLOADS[wl][1]
    tot = 0.0
    for j in doc["jobs"]:
        for d in ("read", "write"):
            s = j[d]
            tot += s["bw_bytes"] / 1e6 if unit == "MB/s" else s["iops"]
    return tot


def latency(doc, wl):
    """(p50, p99, max) completion latency in µs of the workload's direction:
    over several jobs, the median p50, the highest p99 and max."""
    d = WORKLOADS[wl][2]
    p50s, p99s, maxs = [], [], []
    for j in doc["jobs"]:
        c = j[d]["clat_ns"]
        if not j[d]["total_ios"]:
            continue
        pct = c.get("percentile", {})
        p50s.append(pct.get("50.000000", 0) / 1e3)
        p99s.append(pct.get("99.000000", 0) / 1e3)
        maxs.append(c["max"] / 1e3)
    if not p50s:
        return None
    return statistics.median(p50s), max(p99s), max(maxs)


def one(path):
    wl = os.path.basename(path).split(".")[1]
    doc = load(path)
    lat = latency(doc, wl)
    s = "%.0f %s" % (figure(doc, wl), WORKLOADS[wl][1])
    if lat:
        s += ", clat p50 %.0f µs p99 %.0f µs max %.0f µs" % lat
    return s


def fmt(x, unit="MB/s"):
    if x is None:
        return "-"
    return "%.0f" % x


def report(a):
    runs = {}  # (wl, target) -> {round: doc}
    for p in glob.glob(os.path.join(a.results, "*.json")):
        r, wl, tg = os.path.basename(p).split(".")[:3]
        try:
            runs.setdefault((wl, tg), {})[int(r)] = load(p)
        except (ValueError, KeyError) as e:
            print("fuse_report: %s: %s" % (p, e), file=sys.stderr)
    val = {k: {r: figure(d, k[0]) for r, d in v.items()} for k, v in runs.items()}
    lat = {k: {r: latency(d, k[0]) for r, d in v.items()} for k, v in runs.items()}

    def paired(wl, tg, bwl, btg):
        """median over the rounds of (wl on tg) / (bwl on btg) in the same round"""
        x, y = val.get((wl, tg), {}), val.get((bwl, btg), {})
        rs = [x[r] / y[r] for r in sorted(x) if r in y and y[r] > 0]
        return (statistics.median(rs) if rs else None), rs

    vm_label = "%s VM disks on one host: %s files, %s jobs at once, random 4 KiB QD%s each, %s%% reads (sum of IOPS)" % (
        a.vms, a.vms, a.vms, a.vm_qd, a.vm_read_pct)
    rows, met_all, missed = [], True, []
    for wl in ORDER:
        label, unit, _, t_raw, t_ext4 = WORKLOADS[wl]
        if wl == "vm4":
            label = vm_label
        if not any((wl, tg) in val for tg in TARGETS):
            continue
        base = "seq_write" if wl == "thin_write" else wl
        rr, rr_all = paired(wl, "lunfs", base, "raw")
        re_, re_all = paired(wl, "lunfs", wl, "ext4")
        tr, mr = judge(rr, t_raw)
        te, me = judge(re_, t_ext4)
        for t, m in ((t_raw, mr), (t_ext4, me)):
            if t is not None and m != "met":
                met_all = False
        if mr not in ("met", "(not a target)"):
            missed.append("%s vs raw" % wl)
        if me not in ("met", "(not a target)"):
            missed.append("%s vs ext4" % wl)
        raw_vals = list(val.get((base, "raw"), {}).values())

        rows.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, unit, med_range(raw_vals), med_range(list(val.get((wl, "lunfs"), {}).values())),
            med_range(list(val.get((wl, "ext4"), {}).values())),
            ratio_text(rr, rr_all, t_raw), tr, mr, ratio_text(re_, re_all, t_ext4), te, me))

    # latency table: per target, median over rounds of p50 and p99, max of max
    def latcell(wl, tg):
        ls = [v for v in lat.get((wl, tg), {}).values() if v]
        if not ls:
            return None
        return (statistics.median(v[0] for v in ls), statistics.median(v[1] for v in ls),
                max(v[2] for v in ls))
    lrows = []
    for wl in ORDER:
        label = WORKLOADS[wl][0] if wl != "vm4" else "%s VM disks, random 4 KiB QD%s each (reads)" % (a.vms, a.vm_qd)
        cells = {tg: latcell(wl, tg) for tg in TARGETS}
        if not any(cells.values()):
            continue
        if wl == "thin_write":
            cells["raw"] = latcell("seq_write", "raw")
        out = ["| %s |" % label]
        for tg in TARGETS:
            c = cells[tg]
            out.append(" %s / %s / %s |" % ((us(c[0]), us(c[1]), us(c[2])) if c else ("-", "-", "-")))
        lr, lo = cells["lunfs"], cells["raw"]
        out.append(" %s | %s |" % (
            ("%+.0f µs" % (lr[0] - lo[0])) if lr and lo else "-",
            ("%.2f×" % (lr[0] / lo[0])) if lr and lo and lo[0] > 0 else "-"))
        lrows.append("".join(out))

    # CPU per request: fio's own (the application and the kernel's work in
    # its context: submission, the FUSE or ext4 or block layer), and the
    # daemon's (all its threads), from /proc/PID/stat around each run
    def ios(doc):
        return sum(j[d]["total_ios"] for j in doc["jobs"] for d in ("read", "write"))

    def fio_cpu_us(doc):
        t = 0.0
        for j in doc["jobs"]:
            secs = j.get("job_runtime", 0) / 1e3
            t += (j.get("usr_cpu", 0) + j.get("sys_cpu", 0)) / 100.0 * secs
        n = ios(doc)
        return t * 1e6 / n if n else None

    def daemon_cpu_us(wl, r):
        p = os.path.join(a.results, "%d.%s.lunfs.json.daemon_cpu" % (r, wl))
        try:
            ticks, hz = (int(x) for x in open(p).read().split())
        except (OSError, ValueError):
            return None
        n = ios(runs[(wl, "lunfs")][r])
        return ticks / hz * 1e6 / n if n else None

    crows = []
    for wl in ORDER:
        if (wl, "lunfs") not in runs:
            continue
        label = WORKLOADS[wl][0] if wl != "vm4" else "%s VM disks, random 4 KiB QD%s each" % (a.vms, a.vm_qd)
        fr = med(fio_cpu_us(d) for d in runs.get((wl if wl != "thin_write" else "seq_write", "raw"), {}).values())
        fl = med(fio_cpu_us(d) for d in runs[(wl, "lunfs")].values())
        dl = med(daemon_cpu_us(wl, r) for r in runs[(wl, "lunfs")])
        fe = med(fio_cpu_us(d) for d in runs.get((wl, "ext4"), {}).values())
        tot = fl + dl if fl is not None and dl is not None else None
        crows.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            label, us(fr), us(fl), us(dl), us(tot), ("%.1f×" % (tot / fr)) if tot and fr else "-", us(fe)))

    n_rounds = max((len(v) for v in val.values()), default=0)
    fails = "" if a.fails == "0" else "  **%s fio runs failed** (see the bench's output); their rounds are missing above." % a.fails
    text = """%(HEAD)s

What a VM sees: fio on its disk file through the `mount.lunfs` FUSE mount (`fuse/lunfsd.c`), against the same fio on a raw image file and on ext4 over a loop device, all on the same host filesystem, in one run.  Written by `bench/fuse.sh` and `bench/fuse_report.py` (part of `make bench`; alone: `make bench-fuse`, which replaces only this section).  These figures were produced by:

```sh
%(cmd)s
```

| | |
|---|---|
| date | %(date)s |
| source | %(rev)s |
| host filesystem | %(fs)s, in %(bench_dir)s |
| fio | %(fio)s: `--ioengine=io_uring --direct=1 --time_based --runtime=%(secs)s` (`--norandommap --randrepeat=0 --fallocate=none`) |
| rounds | %(rounds)s, round-robin (raw, lunfs, ext4, raw, lunfs, ext4, …), %(secs)s s per run (QD1 latency probe: %(lat_secs)s s) |
| load average | %(load0)s at the start, %(load1)s at the end (the machine's %(ncpu)s CPUs are shared with other work: absolute figures are noisy; the ratios compare runs seconds apart) |
| run time | %(run_secs)s s measuring, after %(prep_secs)s s preparing (prefilling %(files)s) |

- **raw** (a): a %(file_size)s image file on the host filesystem, written in full with `dd oflag=direct` first; the VM disks: %(vms)s more such files of %(vm_size)s.
- **lunfs** (b): a %(img_mib)s MiB image file on the same host filesystem, written in full first (a LUN has every block), then `mkfs.lunfs %(mkfs)s`, `lunfs-cluster fill` (zeros into the holes mkfs left in the metadata regions), mounted with `mount.lunfs IMAGE DIR -f -o host=bench-fuse`; the test file (%(file_size)s) and the %(vms)s VM disks (%(vm_size)s each) written in full through the mount with `dd oflag=direct` (1 MiB requests), so every block is mapped and every read reaches the device.
- **ext4 on loop** (c): an image file of the same size, written in full first, on `losetup --direct-io=on` (dio=%(loop_dio)s), `mkfs.ext4 -E nodiscard,lazy_itable_init=0,lazy_journal_init=0`, mounted with the defaults (%(ext4_opts)s); its files written in full with `dd oflag=direct` the same way.
- The thin file: a new %(file_size)s file every round, sized with `truncate` (all holes), written once from its start at 1 MiB QD8 for %(secs)s s or to its end, then removed.  Its baseline is the raw sequential write of the same round (the prefilled file): issue 11 point 3 asks a first write to reach 0.7× that.
- Each figure is the median over the rounds with the lowest and highest in brackets; a ratio is the median over the rounds of the two runs' ratio within a round (runs seconds apart).  The targets are issue 11's.

| workload | unit | raw (a) | lunfs through FUSE (b) | ext4 on loop (c) | lunfs / raw | target | vs raw | lunfs / ext4 on loop | target | vs ext4 |
|---|---|---|---|---|---|---|---|---|---|---|
%(rows)s

All targets met: **%(met_all)s**%(missed)s.%(fails)s

Where the time goes: fio's completion latency per request (`clat`: from submission to completion, so at queue depth N it includes the wait behind the N−1 requests before it), the median over the rounds of each run's p50 and p99, and the highest max; for the VM disks, the reads, the median p50 of the jobs and their highest p99.  At QD1 the difference *lunfs − raw* at p50 is what one request costs through the kernel's FUSE layer, the daemon and the library (lookup of the mapping, the device I/O from the daemon) beyond the device itself; *ext4 − raw* is the same for the loop device and ext4.

| workload | raw: p50 / p99 / max | lunfs: p50 / p99 / max | ext4 on loop: p50 / p99 / max | lunfs − raw at p50 | lunfs / raw at p50 |
|---|---|---|---|---|---|
%(lrows)s

CPU time per request, in µs (the median over the rounds): fio's own (the application and what the kernel does in its context: the io_uring submission, and the FUSE, ext4 or block layer it enters), and the lunfs daemon's (all its threads: reading the request from /dev/fuse, the library, the device I/O system calls, the reply).  The kernel's own threads (interrupts, the loop device's worker, direct-I/O completion workers) are not counted for any target.  With 2 CPUs, a workload whose requests cost C µs of CPU in all can reach at most 2 000 000 / C requests per second: where *lunfs total / raw* is well above the IOPS ratio's inverse, the machine's CPUs, not the device, set lunfs's limit.

| workload | raw: fio | lunfs: fio | lunfs: daemon | lunfs: total | lunfs total / raw | ext4 on loop: fio |
|---|---|---|---|---|---|---|
%(crows)s
""" % dict(
        HEAD=HEAD, cmd=a.cmd, date=a.date, rev=a.rev, fs=a.fs, bench_dir=a.bench_dir, fio=a.fio,
        secs=a.secs, lat_secs=a.lat_secs, rounds=a.rounds, load0=a.load0, load1=a.load1,
        ncpu=os.cpu_count(), run_secs=a.run_secs, prep_secs=a.prep_secs,
        files="the images and every test file", file_size=a.file_size, vm_size=a.vm_size,
        vms=a.vms, img_mib=a.img_mib, mkfs=a.mkfs, loop_dio=a.loop_dio, ext4_opts=a.ext4_opts,
        rows="\n".join(rows), lrows="\n".join(lrows), crows="\n".join(crows), met_all="yes" if met_all else "no",
        missed="" if met_all else " (missed: %s)" % ", ".join(missed), fails=fails)
    if n_rounds < int(a.rounds):
        text += "\nOnly %d of %s rounds have every run.\n" % (n_rounds, a.rounds)
    with open(a.out, "w") as f:
        f.write(text)




def main():
    p = argparse.ArgumentParser()
    p.add_argument("--one")
    p.add_argument("--splice")
    p.add_argument("--into")
    p.add_argument("--results")
    p.add_argument("--out")
    for k in ("cmd", "rev", "date", "load0", "load1", "prep-secs", "run-secs", "rounds", "secs",
              "lat-secs", "file-size", "vm-size", "vms", "vm-qd", "vm-read-pct", "img-mib", "mkfs",
              "ext4-opts", "loop-dio", "fs", "bench-dir", "fio", "fails"):
        p.add_argument("--" + k, default="?")
    a = p.parse_args()
    if a.one:
        print(one(a.one))
    elif a.splice:
        splice(a.splice, a.into, HEAD)
    else:
        report(a)


if __name__ == "__main__":
    main()
