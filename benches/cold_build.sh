#!/bin/bash
# cold dev build of each method crate alone, before (7865c91) and after (main), fresh target dirs
out=${OUT:-cold_build.txt}
echo "# $(date -u) nproc=$(nproc) load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $out
for c in xai-shap xai-grad-sim xai-cem xai-l2x; do
  for side in before main; do
    root=$(git rev-parse --show-toplevel); dir=$root/../wt-$side; [ $side = main ] && dir=$root
    t=/tmp/cold-$side-$c; rm -rf $t
    s=$( { cd $dir && CARGO_TARGET_DIR=$t /usr/bin/time -f "%e %U %S" cargo build -q -p $c >/dev/null 2>/tmp/cold-err; } 2>&1; tail -1 /tmp/cold-err)
    n=$(ls $t/debug/deps/*.rlib 2>/dev/null | wc -l)
    echo "$c $side wall_cpu: $(tail -1 /tmp/cold-err) rlibs=$n load=$(cut -d' ' -f1 /proc/loadavg)" >> $out
    rm -rf $t
  done
done
