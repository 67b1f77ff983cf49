#!/usr/bin/env bash
# Packs what a borrowed many-core machine needs to run the comparison
# without building anything: the workload binaries, every allocator's
# library (ours, an optional earlier build, the Debian peers and the peers
# built by bench/peers/build.sh) and a run script, into bench/build/device/.
#
#   bash bench/tools/device_bundle.sh [BEFORE.so]
#   # then, on the other machine, from the repository root:
#   bash bench/build/device/run.sh OUT_DIR [ROUNDS] [SCALE]
#
# run.sh writes OUT_DIR/machine.txt, compare.{txt,csv} (every workload at
# its default thread count, all allocators interleaved) and
# scaling.{txt,csv} (thread sweeps 1..16), through bench/tools/sweep.py.
# Build first: `make build`, `make peers`, and the workloads
# (`make compare QUICK=1`, or compare.py builds them).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=bench/build/device
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
workloads="mixed shortlived midsize buffers threads_noshare prodcons server falseshare churn
           cfrac_like glibc_simple xmalloc_like xmalloc_deep sh6_like sh8_like larson_like"
for w in $workloads; do
    cp "bench/build/$w" "$out/bin/"
done
cp target/release/libslaballoc.so "$out/lib/slaballoc.so"
if [ $# -ge 1 ]; then cp "$1" "$out/lib/before.so"; fi
cp /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 "$out/lib/jemalloc.so"
cp /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 "$out/lib/tcmalloc.so"
cp bench/build/peers/mimalloc3/libmimalloc.so "$out/lib/mimalloc3.so"
cp bench/build/peers/snmalloc/libsnmallocshim.so "$out/lib/snmalloc.so"
{
    echo "# made by bench/tools/device_bundle.sh from $(git rev-parse --short HEAD)"
    echo "workloads=\"$(echo $workloads)\""
    cat <<'EOF'
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
o=${1:?OUT_DIR}; rounds=${2:-3}; scale=${3:-0.5}
mkdir -p "$o"
{ nproc; uname -r; grep -m1 'model name' /proc/cpuinfo; ldd --version | head -1; } > "$o/machine.txt"
libs=(--lib glibc=)
for l in jemalloc tcmalloc mimalloc3 snmalloc before slaballoc; do
    [ -f "$here/lib/$l.so" ] && libs+=(--lib "$l=$here/lib/$l.so")
done
python3 bench/tools/sweep.py --bin "$here/bin" "${libs[@]}" --rounds "$rounds" \
    --scale "$scale" --csv "$o/compare.csv" $workloads > "$o/compare.txt"
python3 bench/tools/sweep.py --bin "$here/bin" "${libs[@]}" --rounds 1 --scale 0.25 \
    --threads 1,2,4,8,16 --csv "$o/scaling.csv" \
    threads_noshare larson_like xmalloc_like xmalloc_deep server sh8_like prodcons > "$o/scaling.txt"
EOF
} > "$out/run.sh"
du -sh "$out"
