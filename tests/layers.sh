#!/bin/bash
# The layers (Makefile, README "Layout"): every quoted #include of a source
# file must resolve in its own folder or a folder below it. The build already
# refuses an upward include (each layer gets only its include paths); this
# check names the offending line, and also covers headers no .c includes yet.
set -u
cd "$(dirname "$0")/.."
declare -A below=(
	[base]="base"
	[conf]="conf base"
	[pool]="pool conf base"
	[daemon]="daemon pool conf base"
)
bad=0
for layer in base conf pool daemon; do
	for f in "$layer"/*.[ch]; do
		while IFS=: read -r line inc; do
			found=
			for dir in ${below[$layer]}; do
				[ -e "$dir/$inc" ] && found=$dir && break
			done
			if [ -z "$found" ]; then
				echo "$f:$line: #include \"$inc\" is not in $layer/ or a layer below it (${below[$layer]})" >&2
				bad=1
			fi
		done < <(grep -n '^#include "' "$f" | sed 's/^\([0-9]*\):#include "\([^"]*\)".*/\1:\2/')
	done
done
[ $bad -eq 0 ] && echo "layers: no upward include (base <- conf <- pool <- daemon)"
exit $bad
