//! The platform layer: every call into the operating system lives here.
//!
//! Everything else in the crate goes through these thin wrappers, so the set of
//! system interfaces the allocator depends on is visible in one place (snmalloc's
//! `pal/` idea). None of these functions allocate; all are safe to call from a
//! malloc path, a fork handler or a signal handler.

use core::ptr;
use core::sync::atomic::{AtomicI64, Ordering};

pub const PAGE_SIZE: usize = 4096;

/// Maps `len` bytes of zero-filled read-write memory, committed: without
/// `MAP_NORESERVE`, so the kernel may refuse what it would not back (a
/// request larger than memory and swap in the default overcommit mode,
/// anything past the commit limit under `vm.overcommit_memory=2`), and the
/// caller sees NULL instead of a crash on first touch. Returns null on failure.
pub fn map(len: usize) -> *mut u8 {
    map_hint(len, 0, libc::PROT_READ | libc::PROT_WRITE)
}

/// `map` or `reserve` with an address hint (never MAP_FIXED: the kernel may
/// place the mapping elsewhere, and never replaces an existing one).
fn map_hint(len: usize, hint: usize, prot: i32) -> *mut u8 {
    let e = errno();
    // SAFETY: an anonymous private mapping without MAP_FIXED cannot alias any
    // existing object; the kernel chooses the address.
    let p = unsafe {
        libc::mmap(
            hint as *mut libc::c_void,
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    set_errno(e);
    if p == libc::MAP_FAILED || inject_map_failure() {
        if p != libc::MAP_FAILED {
            unmap(p as *mut u8, len);
        }
        return ptr::null_mut();
    }
    p as *mut u8
}

/// Commits `[p, p + len)` of a reservation (`reserve`): read-write from now
/// on, and charged to the process's commit. False if the kernel refuses
/// (the commit limit under strict overcommit); nothing changed then.
pub fn commit(p: *mut u8, len: usize) -> bool {
    let e = errno();
    // SAFETY: the range is whole pages of a reservation of ours that holds
    // no live allocation yet; mprotect changes only its protection.
    let r = unsafe {
        libc::mprotect(
            p as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    };
    set_errno(e);
    r == 0
}

/// Milliseconds of a monotonic clock (coarse: a few ms of resolution, and
/// about as cheap as a load through the vDSO), for decay deadlines.
pub fn now_ms() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC_COARSE) / 1_000_000
}

/// The clock `clock` (`CLOCK_*`) in ns; the coarse and real-time clocks are
/// vDSO reads, no system call.
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the kernel (vDSO) to fill.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Maps `len` bytes aligned to `align` (a power of two >= the page size) by
/// over-mapping and trimming both ends. Returns null on failure.
pub fn map_aligned(len: usize, align: usize) -> *mut u8 {
    map_aligned_prot(len, align, libc::PROT_READ | libc::PROT_WRITE)
}

/// `reserve` of `len` bytes aligned to `align`, as `map_aligned` does.
pub fn reserve_aligned(len: usize, align: usize) -> *mut u8 {
    map_aligned_prot(len, align, libc::PROT_NONE)
}

fn map_aligned_prot(len: usize, align: usize, prot: i32) -> *mut u8 {
    // First ask for exactly `len` bytes: the kernel often returns an aligned
    // address, or honours a hint at the next aligned one. Only then over-map,
    // which needs `align` more bytes of address space for a moment (that
    // matters under `ulimit -v`).
    let p = map_hint(len, 0, prot);
    if p.is_null() || (p as usize) & (align - 1) == 0 {
        return p;
    }
    // The aligned address below first: the kernel fills the address space
    // top down, so the space above `p` is usually taken and the space
    // below it free. Then the one above. (At an address-space limit the
    // over-mapping below cannot succeed, so these hints are all there is.)
    let down = (p as usize) & !(align - 1);
    let up = down + align;
    unmap(p, len);
    for hint in [down, up] {
        if hint == 0 {
            continue;
        }
        let q = map_hint(len, hint, prot);
        if !q.is_null() {
            if (q as usize) & (align - 1) == 0 {
                return q;
            }
            unmap(q, len);
        }
    }
    let Some(total) = len.checked_add(align) else {
        return ptr::null_mut();
    };
    let raw = map_hint(total, 0, prot);
    if raw.is_null() {
        return raw;
    }
    let start = raw as usize;
    let aligned = (start + align - 1) & !(align - 1);
    let lead = aligned - start;
    let trail = total - lead - len;
    if lead > 0 {
        unmap(raw, lead);
    }
    if trail > 0 {
        unmap((aligned + len) as *mut u8, trail);
    }
    aligned as *mut u8
}

/// Returns a mapping (or part of one) to the kernel.
pub fn unmap(p: *mut u8, len: usize) {
    let e = errno();
    // SAFETY: callers pass whole pages of mappings this crate created and no
    // longer hands out.
    unsafe {
        libc::munmap(p as *mut libc::c_void, len);
    }
    set_errno(e);
}

/// Drops the physical pages behind `[p, p+len)`; the range reads as zero
/// afterwards (MADV_DONTNEED on a private anonymous mapping).
pub fn purge(p: *mut u8, len: usize) {
    let e = errno();
    // SAFETY: the range is whole pages of our own anonymous mapping and holds
    // no live allocation.
    unsafe {
        libc::madvise(p as *mut libc::c_void, len, libc::MADV_DONTNEED);
    }
    set_errno(e);
}

/// Bytes of a transparent huge page (x86_64, and aarch64 with 4 KiB pages).
pub const HUGE_PAGE: usize = 2 << 20;

/// Advises the kernel to back `[p, p + len)`, whole pages of our own
/// mapping, with transparent huge pages (`on`: `MADV_HUGEPAGE`) or never
/// (`MADV_NOHUGEPAGE`). Best effort: a kernel without them refuses, and
/// nothing changes.
pub fn advise_huge(p: *mut u8, len: usize, on: bool) {
    let e = errno();
    let advice = if on {
        libc::MADV_HUGEPAGE
    } else {
        libc::MADV_NOHUGEPAGE
    };
    // SAFETY: advice only: it changes no byte of the range.
    unsafe { libc::madvise(p as *mut libc::c_void, len, advice) };
    set_errno(e);
}

/// Replaces `[p, p + len)` of our own mapping with fresh zero pages: a new
/// anonymous mapping in place (`MAP_FIXED`), which the kernel merges with
/// the neighbouring parts of the arena again (advised, as the arena is,
/// never to take huge pages: a mapping's advice must match its
/// neighbours' for it to merge). Undoes the split that `move_pages`
/// leaves behind (moved pages keep a mapping of their own). Best effort:
/// on failure the range stays mapped as it was.
pub fn remap_fresh(p: *mut u8, len: usize) {
    let e = errno();
    // SAFETY: the range is whole pages of our own anonymous mapping and holds
    // no live allocation; MAP_FIXED replaces exactly it, atomically.
    unsafe {
        libc::mmap(
            p as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        );
    }
    set_errno(e);
    advise_huge(p, len, false);
}

/// Resizes a mapping in place (no move). Returns false if the kernel refuses.
pub fn remap_in_place(p: *mut u8, old: usize, new: usize) -> bool {
    let e = errno();
    // SAFETY: `p` is the start of a mapping of `old` bytes that we own; without
    // MREMAP_MAYMOVE the kernel either resizes it in place or fails.
    let r = unsafe { libc::mremap(p as *mut libc::c_void, old, new, 0) };
    set_errno(e);
    r != libc::MAP_FAILED
}

/// Moves the pages of `[src, src + len)` to `dst` (both page-aligned, `dst`
/// a range of our own mappings that may be overwritten), without copying:
/// `mremap` with `MREMAP_DONTUNMAP`, which leaves `src` mapped and reading
/// as zero. False if the kernel refuses (before Linux 5.7, or out of
/// mappings); nothing has moved then.
pub fn move_pages(src: *mut u8, len: usize, dst: *mut u8) -> bool {
    let e = errno();
    // SAFETY: both ranges lie in mappings the caller owns and uses for
    // nothing else now; MREMAP_FIXED replaces `dst` atomically, and with
    // MREMAP_DONTUNMAP `src` stays mapped (as fresh zero pages).
    let r = unsafe {
        libc::mremap(
            src as *mut libc::c_void,
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED | libc::MREMAP_DONTUNMAP,
            dst as *mut libc::c_void,
        )
    };
    set_errno(e);
    r != libc::MAP_FAILED
}

/// Moves the pages of mapping `[p, p+old)` to `dst` (which must be a mapping of
/// at least `new` bytes that we own), growing it to `new` bytes, without copying.
pub fn remap_to(p: *mut u8, old: usize, new: usize, dst: *mut u8) -> bool {
    let e = errno();
    // SAFETY: both ranges are mappings owned by the caller; MREMAP_FIXED
    // replaces the destination reservation atomically.
    let r = unsafe {
        libc::mremap(
            p as *mut libc::c_void,
            old,
            new,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            dst as *mut libc::c_void,
        )
    };
    set_errno(e);
    r != libc::MAP_FAILED
}

/// FUTEX_WAIT_PRIVATE on `word` while it equals `val`, for at most `timeout_ms`.
pub fn futex_wait(word: &core::sync::atomic::AtomicU32, val: u32, timeout_ms: u64) {
    let ts = libc::timespec {
        tv_sec: (timeout_ms / 1000) as libc::time_t,
        tv_nsec: ((timeout_ms % 1000) * 1_000_000) as libc::c_long,
    };
    let e = errno();
    // SAFETY: the futex word is a live atomic for the duration of the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            val,
            &ts as *const libc::timespec,
        );
    }
    set_errno(e);
}

/// FUTEX_WAKE_PRIVATE: wakes up to `n` waiters on `word`.
pub fn futex_wake(word: &core::sync::atomic::AtomicU32, n: i32) {
    let e = errno();
    // SAFETY: the futex word is a live atomic.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            n,
        );
    }
    set_errno(e);
}

/// Registers the 32 bytes at `area` as the calling thread's rseq area, with
/// signature `sig` (`rseq(2)`, flags 0). Returns 0, or the error: ENOSYS
/// (Linux < 4.18), EPERM (seccomp), EBUSY (the thread has an area already),
/// EINVAL. Leaves errno as it was: it runs inside malloc.
///
/// # Safety
/// `area` is 32-byte aligned and stays valid, for the kernel to write, for
/// the rest of the thread's life (static TLS of this thread: see `cpu`).
pub unsafe fn rseq_register(area: *mut u8, sig: u32) -> i32 {
    let e = errno();
    // SAFETY: rseq(2) only records the address; the caller guarantees it.
    let r = unsafe { libc::syscall(libc::SYS_rseq, area, 32u32, 0i32, sig) };
    let err = if r == 0 { 0 } else { errno().max(1) };
    set_errno(e);
    err
}

pub fn yield_now() {
    // SAFETY: no preconditions.
    unsafe {
        libc::sched_yield();
    }
}

/// The calling thread's CPU affinity mask (None if the kernel's mask does
/// not fit `cpu_set_t`, 1024 CPUs).
pub fn affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: `set` is a local `cpu_set_t` the kernel fills; size matches.
    unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        let e = errno();
        let r = libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set);
        set_errno(e);
        (r == 0).then_some(set)
    }
}

/// Sets the calling thread's CPU affinity mask; false if the kernel refuses
/// (a CPU outside the thread's cpuset, offline, ...). On success the thread
/// runs on an allowed CPU when the call returns.
pub fn set_affinity(set: &libc::cpu_set_t) -> bool {
    let e = errno();
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed.
    let r = unsafe { libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), set) };
    set_errno(e);
    r == 0
}

/// Pins the calling thread to CPU `cpu` alone; false if it may not run there.
pub fn pin_to_cpu(cpu: usize) -> bool {
    if cpu >= libc::CPU_SETSIZE as usize {
        return false;
    }
    // SAFETY: a zeroed `cpu_set_t` is the empty set; CPU_SET writes bit
    // `cpu` < CPU_SETSIZE.
    let set = unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    };
    set_affinity(&set)
}

/// `SLABALLOC_FAIL_MAP_AFTER=n`: the (n+1)-th and later mappings fail (fault
/// injection for out-of-memory tests). -1: off.
static FAIL_MAP_AFTER: AtomicI64 = AtomicI64::new(-1);

/// Fault injection (`SLABALLOC_FAIL_MAP_AFTER`, set by `config`): the
/// (n+1)-th and later mappings fail; -1, off.
pub fn fail_maps_after(n: i64) {
    FAIL_MAP_AFTER.store(n, Ordering::Relaxed);
}

/// Fault injection: true if this mapping attempt must fail.
#[inline]
pub fn inject_map_failure() -> bool {
    let n = FAIL_MAP_AFTER.load(Ordering::Relaxed);
    if n < 0 {
        return false;
    }
    if n == 0 {
        return true;
    }
    FAIL_MAP_AFTER.fetch_sub(1, Ordering::Relaxed);
    false
}

#[cfg(test)]
pub fn sched_getcpu() -> i32 {
    // SAFETY: no preconditions; glibc's sched_getcpu does not allocate.
    unsafe { libc::sched_getcpu() }
}

/// Writes all of `buf` to file descriptor `fd`, retrying on EINTR / short writes.
pub fn write_all(fd: i32, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: buf is a valid slice for its length.
        let n = unsafe { libc::write(fd, buf.as_ptr() as *const libc::c_void, buf.len()) };
        if n <= 0 {
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            return;
        }
        // (`get`: the kernel wrote at most `buf.len()`, and this spares
        // the slicing a panic path.)
        buf = buf.get(n as usize..).unwrap_or_default();
    }
}

/// Duplicates `fd` onto a high, close-on-exec descriptor (-1 on failure).
pub fn dup_high(fd: i32) -> i32 {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) has no memory-safety preconditions.
    unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 200) }
}

pub fn abort() -> ! {
    // SAFETY: no preconditions.
    unsafe { libc::abort() }
}

pub fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

pub fn set_errno(e: i32) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e }
}

pub fn getauxval(key: libc::c_ulong) -> libc::c_ulong {
    // SAFETY: getauxval only reads the auxiliary vector.
    unsafe { libc::getauxval(key) }
}

/// Reads up to `buf.len()` bytes of a small file (procfs / sysfs) with plain
/// system calls. Returns the bytes read (none on failure).
pub fn read_small_file<'a>(path: &core::ffi::CStr, buf: &'a mut [u8]) -> &'a [u8] {
    // SAFETY: path is NUL-terminated; buf is valid for its length.
    let n = unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return &[];
        }
        let n = libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len());
        libc::close(fd);
        n.max(0) as usize
    };
    read_part(buf, n)
}

/// The first `n` bytes of `buf`, which a read filled (`get`: the kernel
/// wrote at most `buf.len()`, and this spares the slicing a panic path).
fn read_part(buf: &[u8], n: usize) -> &[u8] {
    buf.get(..n).unwrap_or_default()
}

/// A random 64-bit value from the kernel (the AT_RANDOM bytes as fallback).
pub fn random_u64() -> u64 {
    let mut v: u64 = 0;
    // SAFETY: v is a valid 8-byte buffer; GRND_NONBLOCK never blocks.
    let n = unsafe {
        libc::syscall(
            libc::SYS_getrandom,
            &mut v as *mut u64,
            8usize,
            libc::GRND_NONBLOCK,
        )
    };
    if n != 8 {
        let at = getauxval(libc::AT_RANDOM) as *const u64;
        if !at.is_null() {
            // SAFETY: AT_RANDOM points at 16 random bytes supplied by the kernel.
            v = unsafe { at.read_unaligned() };
        }
        v ^= &v as *const u64 as u64;
    }
    v | 1
}

/// The value of environment variable `name` (NUL-terminated), without allocating.
pub fn getenv(name: &core::ffi::CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv reads the environment without allocating; the returned
    // string lives as long as the environment entry (we never modify it).
    unsafe {
        let p = libc::getenv(name.as_ptr());
        if p.is_null() {
            None
        } else {
            Some(core::ffi::CStr::from_ptr(p).to_bytes())
        }
    }
}

/// Registers the fork handlers. glibc stores the first handlers it is given
/// without allocating.
pub fn atfork(prepare: extern "C" fn(), parent: extern "C" fn(), child: extern "C" fn()) {
    // SAFETY: the handlers are plain functions that live for the process.
    unsafe {
        libc::pthread_atfork(Some(prepare), Some(parent), Some(child));
    }
}

/// Creates a thread running `f` with every signal blocked, from
/// attributes `attr` has set up (detached, or on a stack of ours). Returns
/// its handle, or None. Keeps errno.
///
/// # Safety
/// `attr` sets nothing that needs more than the caller vouches for (a stack
/// that is ours and unused until the thread is gone).
unsafe fn create_thread(
    f: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void,
    attr: impl FnOnce(&mut libc::pthread_attr_t) -> bool,
) -> Option<libc::pthread_t> {
    // SAFETY: the sigsets and attributes are local values initialised by the
    // libc calls before use; the thread function is a plain function; what
    // `attr` sets is the caller's to vouch for.
    unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut a: libc::pthread_attr_t = core::mem::zeroed();
        libc::pthread_attr_init(&mut a);
        let mut tid: libc::pthread_t = 0;
        let e = errno();
        let r = if attr(&mut a) {
            libc::pthread_create(&mut tid, &a, f, ptr::null_mut())
        } else {
            libc::EINVAL
        };
        set_errno(e);
        libc::pthread_attr_destroy(&mut a);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut());
        (r == 0).then_some(tid)
    }
}

/// Starts a detached thread running `f` with every signal blocked.
pub fn spawn_thread(f: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void) -> bool {
    // SAFETY: detached, on a stack glibc maps (256 KiB).
    unsafe {
        create_thread(f, |a| {
            libc::pthread_attr_setdetachstate(a, libc::PTHREAD_CREATE_DETACHED);
            libc::pthread_attr_setstacksize(a, 256 * 1024);
            true
        })
    }
    .is_some()
}

/// Starts a joinable thread running `f` with every signal blocked, on the
/// caller's stack `[stack, stack + size)` (glibc puts the thread's TLS and
/// descriptor at its top, and maps nothing). Returns its handle, or None if
/// the thread could not be created (the stack too small for the program's
/// static TLS, no more threads).
///
/// # Safety
/// The stack is memory of ours that nothing else uses until the thread
/// has been joined (or, in a forked child, is known not to exist).
pub unsafe fn spawn_thread_on(
    f: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void,
    stack: *mut u8,
    size: usize,
) -> Option<libc::pthread_t> {
    // SAFETY: the caller vouches for the stack (see `# Safety`).
    unsafe {
        create_thread(f, |a| {
            libc::pthread_attr_setstack(a, stack as *mut libc::c_void, size) == 0
        })
    }
}

/// Waits for the joinable thread `t` to end.
pub fn join(t: libc::pthread_t) {
    // SAFETY: `t` is a joinable thread of this process, joined once.
    unsafe {
        libc::pthread_join(t, ptr::null_mut());
    }
}

/// The calling thread's handle.
pub fn thread_self() -> libc::pthread_t {
    // SAFETY: no preconditions.
    unsafe { libc::pthread_self() }
}

/// Looks up the next definition of `name` after this library (glibc's own
/// allocator functions), for pointers that are not ours. May allocate inside
/// ld.so on error paths, so callers must hold no allocator lock.
pub fn next_symbol(name: &core::ffi::CStr) -> *mut libc::c_void {
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name.
    unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) }
}

/// Whether code addresses `a` and `b` lie in the same loaded object (the
/// same shared library or executable), by `dladdr`. False when either is
/// not in any object. `dladdr` takes only the dynamic linker's own lock and
/// does not allocate.
pub fn same_object(a: *const (), b: *const ()) -> bool {
    let base = |p: *const ()| {
        // SAFETY: Dl_info is plain data that dladdr fills; dladdr accepts
        // any address and returns 0 when no object contains it.
        unsafe {
            let mut info: libc::Dl_info = core::mem::zeroed();
            (libc::dladdr(p as *const libc::c_void, &mut info) != 0).then_some(info.dli_fbase)
        }
    };
    matches!((base(a), base(b)), (Some(x), Some(y)) if x == y)
}

pub fn memcpy(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: callers guarantee both ranges are valid and disjoint.
    unsafe {
        libc::memcpy(dst as *mut libc::c_void, src as *const libc::c_void, n);
    }
}

pub fn memset(dst: *mut u8, v: u8, n: usize) {
    // SAFETY: callers guarantee the range is valid and writable.
    unsafe {
        libc::memset(dst as *mut libc::c_void, v as i32, n);
    }
}

pub fn getpid() -> i32 {
    // SAFETY: no preconditions.
    unsafe { libc::getpid() }
}

/// Creates (or truncates) `path` for writing, mode 0644; -1 on failure.
pub fn create_file(path: &core::ffi::CStr) -> i32 {
    // SAFETY: path is NUL-terminated.
    unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        )
    }
}

/// Opens `path` for reading; -1 on failure.
pub fn open_read(path: &core::ffi::CStr) -> i32 {
    // SAFETY: path is NUL-terminated.
    unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) }
}

/// Reads into `buf`, retrying on EINTR; returns the bytes read (none at
/// the end or on an error).
pub fn read(fd: i32, buf: &mut [u8]) -> &[u8] {
    loop {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        return read_part(buf, n.max(0) as usize);
    }
}

pub fn close(fd: i32) {
    // SAFETY: closes a descriptor this module opened.
    unsafe { libc::close(fd) };
}
