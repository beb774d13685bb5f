#!/bin/bash
# `vss knn` as a whole cold process on 64 JPEGs: the commit before a change (a git worktree at $BASE)
# against this checkout, interleaved, 5 runs each after one warm-up (model cache built, server started).
# Set up once: a project "cold" in $ROOT/{base,head}/config, exemplars loaded by each version into
# $ROOT/{base,head}/data, 64 JPEGs in $ROOT/queries (bench/_common.write_jpegs).
ROOT=${ROOT:-/tmp/cold}; BASE=${BASE:-/tmp/base}; HEAD=$(cd "$(dirname "$0")/.." && pwd)
PY=$HEAD/.venv/bin/python
Q=$(ls "$ROOT"/queries/*.jpg | head -64)
run() { v=$1; d=$2; cd "$d"; s=$(date +%s.%N)
  CONFIG_PATH=$ROOT/$v/config VSS_DATA_DIR=$ROOT/$v/data $PY -m vss_core knn cold $Q --top-n 5 >/dev/null 2>&1 || echo "FAIL $v"
  echo "$v $(echo "$(date +%s.%N) - $s" | bc)"; }
run base "$BASE" >/dev/null; run head "$HEAD" >/dev/null
for i in 1 2 3 4 5; do run base "$BASE"; run head "$HEAD"; done
