#!/usr/bin/env bash
# Writes share/corpus/kjv.txt: whole books of the King James Bible (public domain) from
# Debian's bible-kjv package (apt-get install bible-kjv). One chapter per document: a heading
# line ("Genesis 1"), then one verse per line with its number stripped; chapters are separated
# by one blank line (what autotp-tokenize --split blank_line reads as documents).
set -euo pipefail
out="${1:-$(dirname "$0")/kjv.txt}"
books=(Gen Exo Ruth Psa Prv Eccl SSol Mat Mark Luke John Acts Rom Rev)
for b in "${books[@]}"; do
  # A range past the end is coerced to the book's last verse; -l100000: no line wrapping.
  bible -l100000 "${b}1:1-${b}999:999"
done | awk '
  /^$/ { next }                                   # the tool'"'"'s own blank lines
  /^  [0-9]+ / { sub(/^  [0-9]+ /, ""); print; next }   # a verse: drop its number
  { if (n++) print ""; print }                    # a chapter heading starts a document
' > "$out.tmp"
mv "$out.tmp" "$out"
