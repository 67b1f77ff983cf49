#!/bin/sh
# shell_procs: starts many short processes, all of which inherit LD_PRELOAD,
# so the time is dominated by process start-up and exit under the preloaded
# library (its initialisation, the first allocations of libc and of the
# programs). bench/compare.py runs it as a whole process with /bin/sh and
# times it from outside. argv[1] = scale. Each iteration runs /bin/true,
# expr, sed on a small input and a nested `sh -c`; the final line is a
# summary that must match the one under glibc. Written for this benchmark.
scale=${1:-1}
n=$(awk -v s="$scale" 'BEGIN { n = int(250 * s); if (n < 1) n = 1; print n }')
i=0
sum=0
last=
while [ "$i" -lt "$n" ]; do
    /bin/true || exit 2
    sum=$(expr "$sum" + "$i" \* 3)      # (expr exits 1 when the result is 0)
    [ -n "$sum" ] || exit 2
    last=$(printf 'alpha %s beta\n' "$i" | sed -e 's/alpha/A/' -e 's/beta/B/') || exit 2
    [ "$last" = "A $i B" ] || { echo "shell_procs: sed gave '$last'" >&2; exit 2; }
    k=$(sh -c 'echo $(( $1 + 1 ))' sh "$i") || exit 2
    [ "$k" -eq $((i + 1)) ] || { echo "shell_procs: sh -c gave '$k'" >&2; exit 2; }
    i=$((i + 1))
done
echo "shell_procs n=$n sum=$sum last=$last"
