//! The live view: a small shared file per process through which `slabtop`
//! reads a running program's report without stopping it and without ptrace.
//!
//! At its first malloc slow path after it has run for `DELAY_NS` (50 ms:
//! short processes never make one), a process creates `<dir>/<pid>`, mode 0600, in a
//! per-user directory of mode 0700 (`$XDG_RUNTIME_DIR/slaballoc`, else
//! `/dev/shm/slaballoc-<uid>`, else `/tmp/slaballoc-<uid>`; a directory
//! that is not ours or that others can enter is refused), maps it
//! `MAP_SHARED` and closes the descriptor; the library's destructor removes
//! it at exit. Nothing is counted there: `slabtop` sets the page's
//! `request` word, and the next malloc slow path (a cache refill, a large
//! block, or the background reclaimer's round when `SLABALLOC_BACKGROUND=1`)
//! writes the JSON report into the page under a sequence lock. A program
//! nobody watches pays one load of `request` (a line nobody writes) per
//! slow path.
//!
//! A process that ends by `_exit`, `exec` or a signal leaves its file
//! behind: `slabtop` removes a file whose process is gone or no longer maps
//! it (its inode is not in `/proc/<pid>/maps`, which also covers pid
//! reuse and `exec`). The next process that makes its file removes the
//! files of dead pids among the directory's first 16 entries
//! (`remove_dead`), so files of processes that `_exit` do not pile up
//! between runs of slabtop. A forked child unmaps its parent's page and makes its
//! own file the same way, 50 ms after the fork (a child that only execs
//! makes none).
//! Every failure (no /dev/shm, a full disk, a sandbox) leaves the live view
//! off, silently. `SLABALLOC_LIVE=0` turns it off.
//!
//! The page, as `slabtop` reads it (little-endian, offsets in bytes):
//!
//! | offset | field |
//! |---|---|
//! | 0 | magic `SLABTOP1` (written last) |
//! | 8 | layout version (u32, 1) |
//! | 12 | pid (u32) |
//! | 16 | `seq` (u64): odd while a snapshot is being written |
//! | 24 | `request` (u32): non-zero asks for a snapshot |
//! | 28 | `prof_request` (u32): non-zero asks for a heap profile dump |
//! | 32 | `writer` (u32): 1 while a thread writes (one at a time) |
//! | 36 | `len` (u32): bytes of the snapshot (more than fit: truncated) |
//! | 40 | `time` (u64): CLOCK_REALTIME of the snapshot, ns |
//! | 48 | slaballoc version (16 bytes, NUL-padded) |
//! | 64 | program name (64 bytes, NUL-padded) |
//! | 128 | the snapshot: the JSON report (`SLABALLOC_STATS=json`) |

use crate::fmt::Buf;
use core::ffi::CStr;
use core::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

/// Size of the file (sparse: only the pages a snapshot writes are used).
pub const FILE_SIZE: usize = 256 * 1024;
/// Offset of the snapshot in the page.
pub const DATA: usize = 128;

#[repr(C)]
struct Page {
    magic: AtomicU64,
    layout: AtomicU32,
    pid: AtomicU32,
    seq: AtomicU64,
    request: AtomicU32,
    prof_request: AtomicU32,
    writer: AtomicU32,
    len: AtomicU32,
    time: AtomicU64,
    version: [AtomicU8; 16],
    program: [AtomicU8; 64],
}

const _: () = assert!(core::mem::size_of::<Page>() == DATA);
const MAGIC: u64 = u64::from_le_bytes(*b"SLABTOP1");

/// The mapped page, null while the live view is off.
static PAGE: AtomicPtr<Page> = AtomicPtr::new(core::ptr::null_mut());
/// The process wants a file and has none yet: it makes it at its first
/// slow path `DELAY_NS` after `SINCE` (start-up, or the fork that made it).
static WANT: AtomicBool = AtomicBool::new(false);
static SINCE: AtomicU64 = AtomicU64::new(0);
/// Slow paths since the last look at the clock while `WANT` (see
/// `create_when_due`). Plain load and store, not an atomic add: threads
/// that race lose counts, which only delays a look.
static TICKS: AtomicU32 = AtomicU32::new(0);
/// Slow paths between two looks at the clock for `DELAY_NS`: a batch
/// loop of 1600 small blocks spent 1-2 % of its first 50 ms reading the
/// coarse clock on every refill and flush. (Few enough that a process
/// with rare slow paths still gets its file soon after `DELAY_NS`.)
const TICKS_PER_LOOK: u32 = 8;
/// Short processes (`/bin/true`, `expr`, `sed` in a shell script) end
/// before this and never pay for a file: creating and removing one cost
/// about 40 us of CPU per process on the 2-CPU test host, 5 % of a
/// `/bin/true` there (bench/RESULTS.md).
pub const DELAY_NS: u64 = 50_000_000;
/// The file's path (NUL-terminated), for the destructor; written before
/// `PAGE` is published, by one thread (the constructor, or the child thread
/// that wins `WANT`).
struct Path(core::cell::UnsafeCell<[u8; 320]>);
// SAFETY: written only while no other thread can read it (see `PATH`'s
// writers: before `PAGE` is published with Release), read after an Acquire
// load of a non-null `PAGE`.
unsafe impl Sync for Path {}
static PATH: Path = Path(core::cell::UnsafeCell::new([0; 320]));

/// `$XDG_RUNTIME_DIR` as the constructor found it (`XDG_LEN` bytes).
struct Xdg(core::cell::UnsafeCell<[u8; 200]>);
// SAFETY: written once by the constructor before `XDG_LEN` is published.
unsafe impl Sync for Xdg {}
static XDG: Xdg = Xdg(core::cell::UnsafeCell::new([0; 200]));
static XDG_LEN: AtomicUsize = AtomicUsize::new(0);

/// Creates the directory `dir` (mode 0700) if needed and checks that it is
/// a directory of ours that nobody else can enter.
fn own_dir(dir: &CStr) -> bool {
    // SAFETY: `dir` is NUL-terminated; `st` is written by lstat.
    unsafe {
        libc::mkdir(dir.as_ptr(), 0o700);
        let mut st: libc::stat = core::mem::zeroed();
        libc::lstat(dir.as_ptr(), &mut st) == 0
            && st.st_mode & libc::S_IFMT == libc::S_IFDIR
            && st.st_uid == libc::geteuid()
            && st.st_mode & 0o077 == 0
    }
}

/// The candidate directories, in order; false past the last.
fn candidate(i: usize, b: &mut Buf<320>) -> bool {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() } as u64;
    match i {
        0 => {
            let n = XDG_LEN.load(Ordering::Acquire);
            if n == 0 {
                return candidate(1, b);
            }
            // SAFETY: the first `n` bytes were written before `n` was
            // published (Release in `init`) and never change.
            b.raw(unsafe { &(&*XDG.0.get())[..n] }).str("/slaballoc");
        }
        1 => {
            b.str("/dev/shm/slaballoc-").u64(uid);
        }
        2 => {
            b.str("/tmp/slaballoc-").u64(uid);
        }
        _ => return false,
    }
    true
}

/// Called by the constructor: the file is made at the first slow path
/// `DELAY_NS` from now, if the live view is on.
pub fn init() {
    // The environment is read here, not on the slow path that makes the
    // file, where another thread could be changing it.
    if let Some(x) = crate::os::getenv(c"XDG_RUNTIME_DIR") {
        if x.first() == Some(&b'/') && x.len() < 200 {
            // SAFETY: the constructor runs once, before any reader.
            unsafe { (&mut *XDG.0.get())[..x.len()].copy_from_slice(x) };
            XDG_LEN.store(x.len(), Ordering::Release);
        }
    }
    if crate::config::LIVE.load(Ordering::Relaxed) {
        SINCE.store(coarse_ns(), Ordering::Relaxed);
        WANT.store(true, Ordering::Relaxed);
    }
}

/// CLOCK_MONOTONIC_COARSE (a vDSO read, no system call), in ns.
fn coarse_ns() -> u64 {
    crate::os::clock_ns(libc::CLOCK_MONOTONIC_COARSE)
}

/// Makes this process's file and maps it. Silent on failure.
#[cold]
#[inline(never)]
pub fn create() {
    // Made on whatever call reaches a slow path first, a free among them,
    // which must leave errno as it found it (POSIX; `c-tests/conformance`
    // checks it): mkdir's EEXIST, an open's ENOENT and the like stay here.
    let e = crate::os::errno();
    create_file();
    crate::os::set_errno(e);
}

fn create_file() {
    if !crate::config::LIVE.load(Ordering::Relaxed) {
        return;
    }
    let pid = crate::report::pid();
    for i in 0..3 {
        let mut dir = Buf::<320>::new();
        if !candidate(i, &mut dir) {
            return;
        }
        let mut z = [0u8; 320];
        let d = dir.bytes();
        z[..d.len()].copy_from_slice(d);
        let Ok(dc) = CStr::from_bytes_until_nul(&z) else {
            continue;
        };
        if !own_dir(dc) {
            continue;
        }
        let mut f = Buf::<320>::new();
        f.raw(d).str("/").u64(pid as u64);
        let mut path = [0u8; 320];
        let fb = f.bytes();
        if fb.len() >= path.len() {
            continue;
        }
        path[..fb.len()].copy_from_slice(fb);
        if let Some(p) = map_file(&path) {
            // SAFETY: no other thread reads PATH until PAGE is published
            // below (Release, paired with the Acquire in `remove`).
            unsafe { *PATH.0.get() = path };
            fill_header(p, pid);
            PAGE.store(p, Ordering::Release);
            remove_dead(dc, pid);
            // No report until slabtop asks for one: writing a first one
            // here ran the report's code (its own 64 KiB window of our
            // text, `ffi/build.rs`) and filled pages of the file in every
            // process that lived 50 ms, watched or not.
            return;
        }
    }
}

/// Removes the files of a few processes that are gone (ended by `_exit`,
/// a signal, or `exec` into a program without the library: dash, for one,
/// ends with `_exit`), so they do not pile up between two runs of slabtop:
/// at most `SCAN` entries of one `getdents64` read, one `kill(pid, 0)`
/// each. A file whose pid was reused stays for slabtop, which compares
/// inodes.
fn remove_dead(dir: &CStr, me: u32) {
    const SCAN: usize = 16;
    let mut buf = [0u8; 1024];
    // SAFETY: plain system calls; `getdents64` writes at most `buf.len()`
    // bytes of records into `buf`, each starting with its own length
    // (checked before use); names are NUL-terminated within their record.
    unsafe {
        let fd = libc::open(
            dir.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return;
        }
        let n = libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len());
        // (Clamped, and records too short for a name end the scan: every
        // index below is then provably in bounds, with no panic path.)
        let n = if n > 0 {
            (n as usize).min(buf.len())
        } else {
            0
        };
        let mut at = 0usize;
        let mut seen = 0;
        while at + 19 < n && seen < SCAN {
            let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
            if reclen < 20 || at + reclen > n {
                break;
            }
            let name = &buf[at + 19..at + reclen];
            let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
            at += reclen;
            let Some(pid) = crate::report::parse_u32(name) else {
                continue;
            };
            seen += 1;
            if pid != me
                && pid > 0
                && name.len() < 16
                && libc::kill(pid as libc::pid_t, 0) != 0
                && crate::os::errno() == libc::ESRCH
            {
                let mut z = [0u8; 16];
                z[..name.len()].copy_from_slice(name);
                libc::unlinkat(fd, z.as_ptr() as *const libc::c_char, 0);
            }
        }
        libc::close(fd);
    }
}

/// Creates, sizes and maps the file `path` (NUL-terminated).
fn map_file(path: &[u8; 320]) -> Option<*mut Page> {
    // SAFETY: `path` is NUL-terminated; plain system calls on our own
    // descriptor, which is closed on every path; the mapping is FILE_SIZE
    // bytes of a file of that size.
    unsafe {
        let fd = libc::open(
            path.as_ptr() as *const libc::c_char,
            libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        );
        if fd < 0 {
            return None;
        }
        let ok = libc::ftruncate(fd, FILE_SIZE as libc::off_t) == 0;
        let p = if ok {
            libc::mmap(
                core::ptr::null_mut(),
                FILE_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        } else {
            libc::MAP_FAILED
        };
        libc::close(fd);
        if p == libc::MAP_FAILED {
            libc::unlink(path.as_ptr() as *const libc::c_char);
            return None;
        }
        Some(p as *mut Page)
    }
}

fn fill_header(p: *mut Page, pid: u32) {
    // SAFETY: `p` is our fresh mapping of at least DATA bytes; nobody else
    // writes it yet (slabtop ignores it until the magic is set).
    let pg = unsafe { &*p };
    pg.layout.store(1, Ordering::Relaxed);
    pg.pid.store(pid, Ordering::Relaxed);
    for (d, s) in pg.version.iter().zip(crate::report::VERSION.bytes()) {
        d.store(s, Ordering::Relaxed);
    }
    for (d, &s) in pg.program.iter().zip(crate::report::program()) {
        d.store(s, Ordering::Relaxed);
    }
    // Pairs with slabtop's reading of the magic before the rest.
    pg.magic.store(MAGIC, Ordering::Release);
}

/// Called on malloc slow paths (no allocator lock held): writes a snapshot
/// if `slabtop` asked for one; makes the file once the process has lived
/// `DELAY_NS`.
#[inline(always)]
pub fn poll() {
    let p = PAGE.load(Ordering::Relaxed);
    if !p.is_null() {
        // SAFETY: a published page stays mapped until exit or fork_child
        // (which runs with no other thread left).
        if unsafe { (*p).request.load(Ordering::Relaxed) } != 0 {
            write_snapshot(p);
        }
    } else if WANT.load(Ordering::Relaxed) {
        create_when_due();
    }
}

#[cold]
#[inline(never)]
fn create_when_due() {
    let t = TICKS.load(Ordering::Relaxed);
    TICKS.store(t.wrapping_add(1), Ordering::Relaxed);
    if !t.is_multiple_of(TICKS_PER_LOOK) {
        return;
    }
    if coarse_ns().wrapping_sub(SINCE.load(Ordering::Relaxed)) >= DELAY_NS
        && WANT.swap(false, Ordering::Relaxed)
    {
        create();
    }
}

#[cold]
#[inline(never)]
#[link_section = ".text_cold"]
fn write_snapshot(p: *mut Page) {
    // SAFETY: see `poll`.
    let pg = unsafe { &*p };
    // One writer at a time (a signal handler that mallocs while this thread
    // writes finds it taken and leaves). Acquire pairs with the Release
    // below, so a second writer starts after the first one's stores.
    if pg
        .writer
        .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    if pg.request.swap(0, Ordering::Relaxed) != 0 {
        // Sequence lock: odd while writing. The Release fence orders the
        // odd value before the data stores; slabtop reads seq (Acquire),
        // the data, then seq again after an Acquire fence.
        let s = pg.seq.load(Ordering::Relaxed);
        pg.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        let cap = FILE_SIZE - DATA;
        let mut len = 0usize;
        // SAFETY: the data area is [DATA, FILE_SIZE) of our mapping; each
        // copy stays below `cap`.
        let data = unsafe { (p as *mut u8).add(DATA) };
        crate::report::report(crate::report::Format::Json, &mut |b| {
            let n = b.len().min(cap.saturating_sub(len));
            // SAFETY: see above; `b` does not overlap the mapping.
            unsafe { core::ptr::copy_nonoverlapping(b.as_ptr(), data.add(len), n) };
            len += b.len();
        });
        pg.len
            .store(len.min(u32::MAX as usize) as u32, Ordering::Relaxed);
        pg.time.store(now_ns(), Ordering::Relaxed);
        pg.seq.store(s.wrapping_add(2), Ordering::Release);
    }
    pg.writer.store(0, Ordering::Release);
}

fn now_ns() -> u64 {
    crate::os::clock_ns(libc::CLOCK_REALTIME)
}

/// True (once) if `slabtop --prof-dump` asked this process for a heap
/// profile since the last call. For the profiler, from a slow path.
pub fn take_prof_request() -> bool {
    let p = PAGE.load(Ordering::Relaxed);
    // SAFETY: see `poll`.
    !p.is_null()
        && unsafe {
            (*p).prof_request.load(Ordering::Relaxed) != 0
                && (*p).prof_request.swap(0, Ordering::Relaxed) != 0
        }
}

/// At exit: removes the file.
pub fn remove() {
    let p = PAGE.swap(core::ptr::null_mut(), Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: PATH was written before PAGE was published (Acquire
        // above); it is NUL-terminated.
        unsafe { libc::unlink((*PATH.0.get()).as_ptr() as *const libc::c_char) };
    }
}

/// In a forked child (only this thread exists): drop the parent's page,
/// which the child must not write, and make the child's own file at its
/// first slow path.
pub fn fork_child() {
    let p = PAGE.swap(core::ptr::null_mut(), Ordering::Relaxed);
    if !p.is_null() {
        // SAFETY: our mapping of FILE_SIZE bytes; no other thread exists.
        unsafe { libc::munmap(p as *mut libc::c_void, FILE_SIZE) };
        WANT.store(true, Ordering::Relaxed);
    }
    if WANT.load(Ordering::Relaxed) {
        SINCE.store(coarse_ns(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates() {
        let mut b = Buf::<320>::new();
        assert!(candidate(1, &mut b));
        assert!(b.bytes().starts_with(b"/dev/shm/slaballoc-"));
        let mut b = Buf::<320>::new();
        assert!(!candidate(3, &mut b));
    }

    #[test]
    fn own_dir_refuses_open_directories() {
        let d = std::env::temp_dir().join(format!("sa-shm-test-{}", std::process::id()));
        let c = std::ffi::CString::new(d.to_str().unwrap()).unwrap();
        assert!(own_dir(&c));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!own_dir(&c));
        std::fs::remove_dir(&d).unwrap();
    }
}
