#!/bin/sh
# scripts/check-layers.sh [ROOT]: the layering rule of docs/CODING.md, read
# from the #include lines of every C file (make check-layers, run by make
# check).  One line per breach; exit 1 on any.
#   - an include names its folder from the project root ("dev/dev.h"),
#   - a folder includes only its own layer and the ones below it:
#       util <- dev <- format <- lock <- journal <- fs <- tools <- tests, bench
#     (the tools: mkfs fsck admin fuse nbd, each over the library, none over
#     another tool),
#   - a folder's private headers stay in it (dev/dev_impl.h, dev/arbiter.h,
#     fs/internal.h),
#   - fs/lunfs.h, the installed public header, includes system headers only.
# A new folder must be given its layer here before it builds clean.
set -eu
cd "${1:-$(dirname "$0")/..}"
find . -path ./build -prune -o -path ./.git -prune -o -type f -name '*.[ch]' -print |
	sed 's|^\./||' | sort | xargs grep -Hn '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' |
	awk '
BEGIN {
	n = split("util dev format lock journal fs", lib, " ")
	for (i = 1; i <= n; i++)
		rank[lib[i]] = i
	split("mkfs fsck admin fuse nbd", tools, " ")
	for (i in tools)
		rank[tools[i]] = 10
	rank["tests"] = rank["bench"] = 20
	private["dev/dev_impl.h"] = private["dev/arbiter.h"] = private["fs/internal.h"] = 1
	order = "util <- dev <- format <- lock <- journal <- fs <- tools (mkfs fsck admin fuse nbd) <- tests, bench"
}
function breach(msg) {
	printf "%s:%s: %s\n", file, line, msg
	bad++
}
{
	# file:line:#include "path"
	file = $0; sub(/:.*/, "", file)
	line = $0; sub(/^[^:]*:/, "", line); sub(/:.*/, "", line)
	inc = $0; sub(/^[^"]*"/, "", inc); sub(/".*/, "", inc)
	from = file; sub(/\/.*/, "", from)
	to = inc; sub(/\/.*/, "", to)
	if (!(from in rank)) {
		breach("folder " from "/ has no layer: give it one in scripts/check-layers.sh")
		next
	}
	if (inc !~ /\//) {
		breach("#include \"" inc "\" must name its folder (\"dir/" inc "\")")
		next
	}
	if (!(to in rank)) {
		breach("#include \"" inc "\": folder " to "/ has no layer")
		next
	}
	if (file == "fs/lunfs.h")
		breach("the public header includes \"" inc "\": it may include system headers only")
	else if ((inc in private) && from != to)
		breach("#include \"" inc "\": a header private to " to "/")
	else if (rank[to] > rank[from] || (rank[to] == 10 && rank[from] == 10 && from != to))
		breach("#include \"" inc "\": " from "/ may not include " to "/ (" order ")")
}
END {
	if (bad) {
		printf "check-layers: %d include(s) break the layering (docs/CODING.md)\n", bad
		exit 1
	}
	print "check-layers: every include goes downward"
}'
