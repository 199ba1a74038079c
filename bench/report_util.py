"""bench/report_util.py: what the section writers of docs/PERFORMANCE.md
share (bench/fuse_report.py, bench/nbd_report.py): fio's JSON, medians with
their range, a ratio against its target, latencies, and the splice that
replaces one "## " section of the file and keeps the rest."""
import json
import os
import statistics


def load(path):
    """fio --output-format=json (fio may print a warning line before it)"""
    with open(path) as f:
        text = f.read()
    return json.loads(text[text.index("{"):])


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def med_range(xs):
    """'median (lowest–highest)'"""
    if not xs:
        return "-"
    return "%.0f (%.0f–%.0f)" % (statistics.median(xs), min(xs), max(xs))


def judge(ratio, target):
    """(target text, 'met' / '**missed**' / ...)"""
    if target is None:
        return "-", "(not a target)"
    if ratio is None:
        return "≥ %.2f" % target, "no data"
    return "≥ %.2f" % target, ("met" if ratio >= target else "**missed**")


def ratio_text(x, xs, t):
    """The median ratio x in bold (three decimals where two would round up
    to the target t), and how many of the rounds' ratios xs meet t (or
    their range when there is no target)."""
    if x is None:
        return "-"
    s = "**%.3f**" % x if t is not None and x < t <= round(x, 2) else "**%.2f**" % x
    if t is not None and len(xs) > 1:
        s += " (%d of %d rounds ≥ %.2f)" % (sum(1 for v in xs if v >= t), len(xs), t)
    elif len(xs) > 1:
        s += " (%.2f–%.2f)" % (min(xs), max(xs))
    return s


def us(x):
    if x is None:
        return "-"
    if x >= 10000:
        return "%.1f ms" % (x / 1e3)
    return "%.0f µs" % x


def splice(frag, into, head, before="## Raw output"):
    """Replace the section HEAD (from its heading to the next '## ') in INTO;
    without one, insert it before the heading BEFORE (or at the end)."""
    with open(frag) as f:
        new = f.read().rstrip("\n") + "\n\n"
    try:
        with open(into) as f:
            lines = f.read().splitlines(keepends=True)
    except FileNotFoundError:
        lines = ["# lunfs performance\n", "\n"]
    start = next((i for i, l in enumerate(lines) if l.rstrip("\n") == head), None)
    if start is None:
        start = end = next((i for i, l in enumerate(lines) if l.startswith(before)), len(lines))
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    text = "".join(lines[:start]) + new + "".join(lines[end:])
    tmp = "%s.tmp.%d" % (into, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, into)
