#!/bin/sh
# fail: prints a line to each stream and exits 7, so that a failure's report can be seen (and tested).
echo "fail: about to fail on purpose in $(hostname)"
echo "fail: this goes to stderr" >&2
exit 7
