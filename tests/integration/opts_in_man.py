#!/usr/bin/env python3
"""Every option a tool parses (read from the code's option tables: getopt
strings, struct option arrays, fuse_opt tables, the nbdkit plugin's
key=value parameters) appears in its man page.
Usage: opts_in_man.py ROOT; prints what is missing, exits 1 if anything is."""
import re, sys
root = sys.argv[1]
tools = {"mkfs/mkfs.c": "man/mkfs.lunfs.8", "fsck/fsck.c": "man/fsck.lunfs.8",
         "admin/lunfs.c": "man/lunfs.8", "fuse/lunfsd.c": "man/mount.lunfs.8",
         "nbd/nbdkit-lunfs-plugin.c": "man/nbdkit-lunfs-plugin.1"}
missing = []
for src, man in tools.items():
    code = open(f"{root}/{src}").read()
    page = open(f"{root}/{man}").read().replace("\\-", "-").replace("\\fB", "").replace("\\fR", "").replace("\\fI", "")
    opts = set()
    for s in re.findall(r'getopt(?:_long)?\(argc, argv, "([^"]+)"', code):
        opts |= {"-" + c for c in s if c.isalnum()}
    opts |= {"--" + n for n in re.findall(r'\{"([a-z-]+)", (?:no|required|optional)_argument', code)}
    # options a subcommand parses by hand: !strcmp(argv[i], "--host")
    opts |= set(re.findall(r'strcmp\(argv\[i\], "(--?[a-z][a-z-]*)"\)', code))
    for name, key in re.findall(r'FUSE_OPT_KEY\("([^"]+)", ([A-Z_]+)\)', code):
        if key != "FUSE_OPT_KEY_DISCARD":
            opts.add(name)
    # nbdkit's .config: if (!strcmp(key, "file")) ...
    opts |= {n + "=" for n in re.findall(r'!strcmp\(key, "([a-z_]+)"\)', code)}
    if not opts:
        missing.append(f"{src}: no option table found")
    for o in sorted(opts):
        pat = re.escape(o) + (r"" if o.endswith("=") else r"(?![\w-])")
        if not re.search(r"(?<![\w-])" + pat, page):
            missing.append(f"{man}: {o} (parsed in {src})")
    print(f"{src}: {len(opts)} options: {' '.join(sorted(opts))}")
for m in missing:
    print("MISSING", m)
sys.exit(1 if missing else 0)
