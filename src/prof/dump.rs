//! Heap profile dumps: the live sampled heap written as a text file
//! (`PREFIX.PID[.peak.N|.N].heap`, see the module's header).

use super::{prefix, Table, SAMPLE};
use crate::fmt::Buf;
use crate::os;
use core::sync::atomic::Ordering;

/// Why a dump is written (its file name says which).
pub(super) enum Kind {
    Exit,
    Peak(u64),
    Demand(u64),
}

/// A buffered writer to a file descriptor, on the stack.
struct Out {
    fd: i32,
    buf: Buf<4096>,
}

impl Out {
    fn room(&mut self, n: usize) {
        if self.buf.bytes().len() + n > 4096 {
            self.flush();
        }
    }

    fn flush(&mut self) {
        os::write_all(self.fd, self.buf.bytes());
        self.buf = Buf::new();
    }
}

#[cold]
#[link_section = ".text_cold"]
pub(super) fn write_dump(t: &Table, kind: Kind) -> bool {
    let mut name = Buf::<512>::new();
    name.raw(prefix()).str(".").u64(os::getpid() as u64);
    match kind {
        Kind::Exit => {}
        Kind::Peak(n) => {
            name.str(".peak.").u64(n);
        }
        Kind::Demand(n) => {
            name.str(".").u64(n);
        }
    }
    name.str(".heap\0");
    let Ok(path) = core::ffi::CStr::from_bytes_until_nul(name.bytes()) else {
        return false;
    };
    let fd = os::create_file(path);
    if fd < 0 {
        crate::fmt::warn(&[b"SLABALLOC_PROF: cannot create ", path.to_bytes()]);
        return false;
    }
    let rate = SAMPLE.load(Ordering::Relaxed);
    let mut o = Out {
        fd,
        buf: Buf::new(),
    };
    // gperftools' header: live count and bytes, then (the same: we keep
    // live samples only) the totals, and the sampling period.
    o.buf
        .str("heap profile: ")
        .u64(t.live as u64)
        .str(": ")
        .u64(t.live_bytes)
        .str(" [")
        .u64(t.live as u64)
        .str(": ")
        .u64(t.live_bytes)
        .str("] @ heap_v2/")
        .u64(rate)
        .str("\n");
    for pos in 0..t.used {
        // SAFETY: pos < used <= POOL; we hold the table lock.
        let s = unsafe { &*t.pool.add(pos) };
        if s.addr == 0 {
            continue;
        }
        o.room(64 + 19 * s.nframes);
        o.buf
            .str("1: ")
            .u64(s.size as u64)
            .str(" [1: ")
            .u64(s.size as u64)
            .str("] @");
        for &f in s.frames.iter().take(s.nframes) {
            o.buf.str(" ").hex(f as u64);
        }
        o.buf.str("\n");
    }
    o.room(32);
    o.buf.str("\nMAPPED_LIBRARIES:\n");
    o.flush();
    copy_maps(fd);
    os::close(fd);
    true
}

/// Appends `/proc/self/maps` to `fd`, a page at a time.
fn copy_maps(fd: i32) {
    let src = os::open_read(c"/proc/self/maps");
    if src < 0 {
        return;
    }
    let mut page = [0u8; 4096];
    loop {
        let got = os::read(src, &mut page);
        if got.is_empty() {
            break;
        }
        os::write_all(fd, got);
    }
    os::close(src);
}
