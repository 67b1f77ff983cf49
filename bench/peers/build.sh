#!/usr/bin/env bash
# Build the peer allocators of bench/peers/peers.lock as LD_PRELOAD libraries:
#   bench/build/peers/mimalloc3/libmimalloc.so      (mimalloc v3, release, MI_OVERRIDE=ON, MI_SECURE=OFF)
#   bench/build/peers/snmalloc/libsnmallocshim.so   (snmalloc's override shim, Release)
# Sources: the .crate files of libmimalloc-sys / snmalloc-sys from crates.io,
# fetched with `cargo fetch` through a throwaway project in bench/build/peers/fetch
# and checked against the sha256 in peers.lock before anything is extracted.
# mimalloc: one cc command with the flags of its CMake Release shared target
# (the crate lacks the cmake/ helpers its CMakeLists needs). snmalloc: cmake
# (apt-get installs it if we are root) or, without cmake, a c++ command that
# mirrors the flags of its snmallocshim target.
#
# Idempotent: a peer whose library exists with a matching stamp is skipped.
# A peer that cannot be fetched, verified or built is reported with a warning
# and skipped; the script still exits 0 (compare.py checks for the .so files).
#   usage: bench/peers/build.sh [NAME...]      (default: every peer in peers.lock)
#   env:   PEERS_FORCE=1 rebuild; NO_INSTALL=1 never apt-get; PEERS_NO_CMAKE=1 direct build;
#          PEERS_PRINT_SHA=1 print the sha256 of the fetched crates (for bumping versions)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$(dirname "$HERE")")
OUT=$ROOT/bench/build/peers
LOCK=$HERE/peers.lock
CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
JOBS=$(nproc 2>/dev/null || echo 2)
CC=${CC:-cc}
CXX=${CXX:-c++}
mkdir -p "$OUT"

warn() { echo "peers/build.sh: WARNING: $*" >&2; }
say()  { echo "peers/build.sh: $*" >&2; }

lib_of() {
    case $1 in
        mimalloc3) echo "$OUT/mimalloc3/libmimalloc.so" ;;
        snmalloc)  echo "$OUT/snmalloc/libsnmallocshim.so" ;;
        *) echo "" ;;
    esac
}

# -- fetch: make sure CRATE-VERSION.crate is in cargo's cache
find_crate() {
    ls "$CARGO_HOME"/registry/cache/*/"$1-$2.crate" 2>/dev/null | head -n 1
}
fetch_all() {   # one throwaway project depending on every pinned crate
    local d=$OUT/fetch
    mkdir -p "$d/src"
    : > "$d/src/lib.rs"
    {
        echo '[package]'
        echo 'name = "slaballoc-bench-peer-fetch"'
        echo 'version = "0.0.0"'
        echo 'edition = "2021"'
        echo 'publish = false'
        echo '[workspace]'
        echo '[dependencies]'
        grep -v '^#' "$LOCK" | awk 'NF>=4 {printf "%s = { version = \"=%s\", default-features = false }\n", $2, $3}'
    } > "$d/Cargo.toml"
    say "cargo fetch (pinned crates)"
    (cd "$d" && cargo fetch -q) || warn "cargo fetch failed"
}

have_cmake() {
    [ -z "${PEERS_NO_CMAKE:-}" ] || return 1
    command -v cmake >/dev/null 2>&1 && return 0
    if [ -z "${NO_INSTALL:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "apt-get install cmake"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends cmake >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null 2>&1 &&
              DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends cmake >/dev/null 2>&1; }
    fi
    command -v cmake >/dev/null 2>&1
}

build_mimalloc3() {   # $1 = source dir, $2 = output dir
    # Always by hand: the crate ships mimalloc's CMakeLists.txt but not its
    # cmake/ helper dir, so `cmake` stops at configure. These are the flags and
    # defines its CMakeLists gives the Release `mimalloc` SHARED target with
    # MI_OVERRIDE=ON (as printed by its configure step), compiled as one unit
    # through src/static.c (which #includes the same sources; the crate builds it so too).
    local src=$1 out=$2
    "$CC" -O3 -DNDEBUG -std=gnu11 -fPIC -shared -Wall -Wextra -Wno-unknown-pragmas -fvisibility=hidden \
          -Wstrict-prototypes -ftls-model=initial-exec -fno-builtin-malloc \
          -DMI_CMAKE_BUILD_TYPE=release -DMI_BUILD_RELEASE -DMI_SHARED_LIB -DMI_SHARED_LIB_EXPORT \
          -DMI_MALLOC_OVERRIDE -I"$src/include" "$src/src/static.c" \
          -o "$out/libmimalloc.so.tmp" -lpthread -lrt -latomic >"$out/build.log" 2>&1 ||
        { tail -n 20 "$out/build.log" >&2; return 1; }
    mv "$out/libmimalloc.so.tmp" "$out/libmimalloc.so"
}

build_snmalloc() {
    local src=$1 out=$2
    if have_cmake; then
        cmake -S "$src" -B "$out/cmake" -DCMAKE_BUILD_TYPE=Release -DSNMALLOC_BUILD_TESTING=OFF \
              >"$out/cmake.log" 2>&1 &&
        cmake --build "$out/cmake" -j "$JOBS" --target snmallocshim >>"$out/cmake.log" 2>&1 ||
            { tail -n 20 "$out/cmake.log" >&2; return 1; }
        cp -L "$out/cmake/libsnmallocshim.so" "$out/libsnmallocshim.so.tmp" &&
        mv "$out/libsnmallocshim.so.tmp" "$out/libsnmallocshim.so"
    else
        # the `compile(snmallocshim SHARED malloc.cc new.cc)` target of its CMakeLists, by hand
        "$CXX" -O3 -DNDEBUG -std=c++20 -fPIC -shared -fvisibility=hidden -fomit-frame-pointer \
               -ftls-model=initial-exec -ffunction-sections -mcx16 -mprfchw \
               -DSNMALLOC_USE_WAIT_ON_ADDRESS=1 -DSNMALLOC_USE_CXX11_THREAD_ATEXIT_DIRECT \
               '-DSNMALLOC_EXPORT=__attribute__((visibility("default")))' \
               -DSNMALLOC_CHECK_LOADS=false -DSNMALLOC_PAGEID=false \
               -I"$src/src" "$src/src/snmalloc/override/malloc.cc" "$src/src/snmalloc/override/new.cc" \
               -o "$out/libsnmallocshim.so.tmp" -static-libstdc++ -pthread -latomic &&
        mv "$out/libsnmallocshim.so.tmp" "$out/libsnmallocshim.so"
    fi
}

want=("$@")
fetched=
status=0
while read -r name crate ver sha sub; do
    case $name in ''|'#'*) continue ;; esac
    if [ ${#want[@]} -gt 0 ] && ! printf '%s\n' "${want[@]}" | grep -qx "$name"; then continue; fi
    lib=$(lib_of "$name")
    [ -n "$lib" ] || { warn "$name: no build recipe; skipped"; continue; }
    dir=$OUT/$name
    stamp="$crate $ver $sha"
    if [ -z "${PEERS_FORCE:-}" ] && [ -f "$lib" ] && [ "$(cat "$dir/STAMP" 2>/dev/null)" = "$stamp" ]; then
        say "$name: up to date ($crate $ver)"
        continue
    fi
    rm -f "$lib"       # stale or unverified: never leave it for compare.py to pick up
    file=$(find_crate "$crate" "$ver")
    if [ -z "$file" ] && [ -z "$fetched" ]; then
        command -v cargo >/dev/null 2>&1 && fetch_all || warn "no cargo to fetch crates with"
        fetched=1
        file=$(find_crate "$crate" "$ver")
    fi
    if [ -z "$file" ]; then warn "$name: $crate-$ver.crate not available; skipped"; status=1; continue; fi
    got=$(sha256sum "$file" | cut -d' ' -f1)
    [ -n "${PEERS_PRINT_SHA:-}" ] && say "$crate $ver sha256 $got"
    if [ "$got" != "$sha" ]; then
        warn "$name: sha256 of $file is $got, peers.lock says $sha; skipped"; status=1; continue
    fi
    rm -rf "$dir"
    mkdir -p "$dir/src"
    if ! tar -xzf "$file" -C "$dir/src" --strip-components=1; then
        warn "$name: cannot extract $file; skipped"; status=1; continue
    fi
    say "$name: building $crate $ver ($sub)"
    if "build_$name" "$dir/src/$sub" "$dir" && [ -f "$lib" ]; then
        echo "$stamp" > "$dir/STAMP"
        say "$name: built $lib"
    else
        rm -f "$lib"
        warn "$name: build failed; skipped"; status=1
    fi
done < "$LOCK"
# exit 0 even on failures: a missing peer never fails a comparison
[ $status = 0 ] || warn "some peers were not built"
exit 0
