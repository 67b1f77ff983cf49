//! The zone's sections on a CPU's stacks (`Caches`): bulk moves between a
//! stack and its zone (`push_bulk_owned`, `pop_bulk_owned`), a stack's
//! capacity (`regear_owned`), and the outbox's own push and drain
//! (`push_here`, `take_here`); one chunk at a time for the tests
//! (`push_owned`, `pop_owned`). Each runs only on the CPU it names and
//! fails elsewhere; malloc's and free's hit sections are in the parent
//! module, with the macros all of them are built from.

// The macros name these where they are called.
use super::ROOT_ID_FIELD_AT;
use crate::arch::Caches;
use crate::cache_layout::{
    slot_offset, stack_offset, BULK_POPS_AT, BULK_PUSHES_AT, CAP_MAX, CPU_SHIFT, ROOT,
};

impl Caches {
    /// Adds `n` to the count at `at` (`BULK_POPS_AT`, `BULK_PUSHES_AT`) of
    /// CPU `owner`'s class `c` stack, after a section that moved `n` chunks
    /// in or out of it committed. Outside the section, so that a restart
    /// cannot count twice: inside, an add before the committing store ran
    /// again when the kernel restarted the section after it, and a batch's
    /// chunks counted as moved by the zone but never by a malloc (the
    /// report's `mallocs` fell short by a batch: c-tests/report.c, under
    /// load). Atomic, since the thread may since run on another CPU, whose
    /// sections never write these words.
    fn count_bulk(&self, owner: usize, c: usize, at: usize, n: usize) {
        let w = (self.base + (owner << CPU_SHIFT) + stack_offset(c) + at)
            as *const core::sync::atomic::AtomicU64;
        // SAFETY: CPU `owner` (< n) has a block in the mapping, and its
        // class `c` stack's header holds the aligned u64 at `at`, written
        // only by these atomic adds.
        unsafe { (*w).fetch_add(n as u64, core::sync::atomic::Ordering::Relaxed) };
    }

    /// Pushes `p` (class `c`, of zone `owner`) onto CPU `owner`'s stack if
    /// the caller runs there and it has room: one chunk of `push_bulk`, for
    /// the tests of the sections.
    #[cfg(test)]
    pub fn push_owned(&self, owner: usize, c: usize, p: *mut u8) -> bool {
        if owner >= self.n as usize {
            return false;
        }
        // The stack's address comes from the CPU the section runs on,
        // which must be `owner`: a compare and branch, so that the slot
        // address does not wait for the load that gave `owner`.
        let bc = self.base + stack_offset(c);
        let ok: usize;
        // SAFETY: the section writes the stack of the CPU it runs on
        // (mapped: that CPU is `owner` < n) only after finding itself on
        // it, and the kernel restarts it if the thread leaves the CPU
        // before the committing store of the new head, so the slot write
        // and the commit see a stable head. A slot written by an aborted
        // attempt lies outside tail..head, where nobody reads it.
        unsafe {
            rseq_stack!(
                owned;
                push_body!("");
                off = in(reg) self.off,
                owner = in(reg) owner,
                bc = in(reg) bc,
                p = in(reg) p,
                ok = out(reg) ok,
            );
        }
        if ok != 0 {
            self.count_bulk(owner, c, BULK_PUSHES_AT, 1);
        }
        ok != 0
    }

    /// Pops a chunk of class `c` from CPU `owner`'s stack if the caller runs
    /// on that CPU: one chunk of `pop_bulk`, for the tests of the sections.
    #[cfg(test)]
    pub fn pop_owned(&self, owner: usize, c: usize) -> *mut u8 {
        if owner < self.n as usize {
            let bc = self.base + stack_offset(c);
            let p: usize;
            // SAFETY: the stack of CPU `owner` (< n, mapped),
            // written only after the section found itself on that CPU, with
            // a restart on leaving it before the committing store.
            unsafe {
                rseq_stack!(
                    owned;
                    pop_body!("");
                    off = in(reg) self.off,
                    owner = in(reg) owner,
                    bc = in(reg) bc,
                    top = out(reg) _,
                    ok = out(reg) p,
                );
            }
            if p != 0 {
                self.count_bulk(owner, c, BULK_POPS_AT, 1);
            }
            return p as *mut u8;
        }
        let _ = (owner, c);
        core::ptr::null_mut()
    }

    /// See the function `push_bulk`; `buf` holds 1 to CAP_MAX chunks.
    pub fn push_bulk_owned(&self, owner: usize, c: usize, buf: &[*mut u8]) -> bool {
        if owner >= self.n as usize {
            return false;
        }
        let bc = self.base + stack_offset(c);
        let m = buf.len();
        if m == 0 {
            return true;
        }
        let ok: usize;
        // SAFETY: the stack of CPU `owner` (< n, mapped), written only
        // after the section found itself on that CPU; the kernel restarts
        // the section if the thread leaves the CPU before the committing
        // store of the new head. The new count is checked against the
        // capacity (<= CAP_MAX <= mask + 1) before any slot is written, and
        // every slot index is masked, so the copy stays inside the ring and
        // off its cached chunks; a restart redoes it, and slots written by
        // an aborted attempt lie outside tail..head. `buf` has
        // `m` >= 1 readable words.
        unsafe {
            rseq_stack!(
                owned;
                "mov {top}, qword ptr [{q} + {k} + 8]",
                "lea {q}, [{q} + {k}]",
                "mov {t}, {top}",
                "sub {t}, qword ptr [{q}]",
                "add {t}, {m}",
                "cmp {t:e}, dword ptr [{q} + 16]",
                "ja 7f",
                // buf[0..m] into the slots from the head on.
                "xor {i:e}, {i:e}",
                "9:",
                "lea {d}, [{top} + {i}]",
                "and {d:e}, dword ptr [{q} + 20]",
                "mov {ok}, qword ptr [{buf} + {i} * 8]",
                "mov qword ptr [{q} + {d} * 8 + 64], {ok}",
                "add {i:e}, 1",
                "cmp {i}, {m}",
                "jb 9b",
                "add {top}, {m}",
                "mov {ok}, {top}",
                "mov qword ptr [{q} + 8], {top}";
                off = in(reg) self.off,
                owner = in(reg) owner,
                bc = in(reg) bc,
                buf = in(reg) buf.as_ptr(),
                m = in(reg) m,
                top = out(reg) _,
                t = out(reg) _,
                d = out(reg) _,
                i = out(reg) _,
                ok = out(reg) ok,
            );
        }
        if ok != 0 {
            self.count_bulk(owner, c, BULK_PUSHES_AT, m);
        }
        ok != 0
    }

    /// See the function `cache::regear`: sets CPU `owner`'s class `c`
    /// stack to capacity `cap` and mask `mask` (`cap <= mask + 1 <=` its
    /// slots) if the caller runs on that CPU and the stack is empty.
    pub fn regear_owned(&self, owner: usize, c: usize, cap: u32, mask: u32) -> bool {
        if owner >= self.n as usize || cap == 0 || cap > mask.wrapping_add(1) {
            return false;
        }
        let bc = self.base + stack_offset(c);
        let ok: usize;
        // SAFETY: the stack of CPU `owner` (< n, mapped), written only
        // after the section found itself on that CPU, with a restart if
        // the thread leaves it before the last store. Its pushes and pops
        // run only on that CPU, so none runs between our test that the
        // ring is empty (tail = head) and our stores: with no chunk in it,
        // a new mask moves none. Every state the stores pass through keeps
        // capacity <= mask + 1 (the invariant that keeps a push inside the
        // slots in use): first the capacity drops to the smaller of the old
        // and the new, then the mask changes, then the capacity is set (the
        // committing store). A restart (or a failure after the first two
        // stores) leaves such a state too; it redoes the stores, which
        // only ever write the caller's values.
        unsafe {
            rseq_stack!(
                owned;
                "mov {t}, qword ptr [{q} + {k}]",
                "lea {q}, [{q} + {k}]",
                "cmp {t}, qword ptr [{q} + 8]",
                "jne 7f",
                "mov {t:e}, dword ptr [{q} + 16]",
                "cmp {t:e}, {cap:e}",
                "cmova {t:e}, {cap:e}",
                "mov dword ptr [{q} + 16], {t:e}",
                "mov dword ptr [{q} + 20], {mask:e}",
                "mov {ok:e}, 1",
                "mov dword ptr [{q} + 16], {cap:e}";
                off = in(reg) self.off,
                owner = in(reg) owner,
                bc = in(reg) bc,
                cap = in(reg) cap,
                mask = in(reg) mask,
                t = out(reg) _,
                ok = out(reg) ok,
            );
        }
        ok != 0
    }

    /// See the function `pop_bulk`.
    pub fn pop_bulk_owned(&self, owner: usize, c: usize, buf: &mut [*mut u8]) -> usize {
        let want = buf.len().min(CAP_MAX);
        if owner >= self.n as usize || want == 0 {
            return 0;
        }
        let bc = self.base + stack_offset(c);
        let got: usize;
        // SAFETY: the stack of CPU `owner` (< n, mapped), read and
        // committed only while the section runs on that CPU (a restart
        // if the thread leaves it before the committing store). It copies m = min(count, want) chunks into `buf`
        // (ours, at least `want` words): the slots of tail .. tail + m,
        // masked, so inside the ring. A restart redoes the copy; the one
        // committing store (the tail plus m) is last.
        unsafe {
            rseq_stack!(
                owned;
                "mov {top}, qword ptr [{q} + {k}]",
                "lea {q}, [{q} + {k}]",
                "mov {ok}, qword ptr [{q} + 8]",
                "sub {ok}, {top}",
                "cmp {ok}, {want}",
                "cmova {ok}, {want}",
                "test {ok}, {ok}",
                "jz 7f",
                // buf[i] = the slot of tail + i, oldest first.
                "xor {i:e}, {i:e}",
                "9:",
                "lea {d}, [{top} + {i}]",
                "and {d:e}, dword ptr [{q} + 20]",
                "mov {d}, qword ptr [{q} + {d} * 8 + 64]",
                "mov qword ptr [{buf} + {i} * 8], {d}",
                "add {i:e}, 1",
                "cmp {i}, {ok}",
                "jb 9b",
                "add {top}, {ok}",
                "mov qword ptr [{q}], {top}";
                off = in(reg) self.off,
                owner = in(reg) owner,
                bc = in(reg) bc,
                buf = in(reg) buf.as_mut_ptr(),
                want = in(reg) want,
                top = out(reg) _,
                d = out(reg) _,
                i = out(reg) _,
                ok = out(reg) got,
            );
        }
        if got != 0 {
            self.count_bulk(owner, c, BULK_POPS_AT, got);
        }
        got
    }

    /// Pushes `p` onto stack `slot` of the CPU the caller runs on.
    #[inline(always)]
    pub fn push_here(&self, slot: usize, p: *mut u8) -> bool {
        self.push_here_head(slot, p) != 0
    }

    /// `push_here`, returning the stack's head after the push (its
    /// pushes so far, never 0), or 0 if it refused `p`: what the large
    /// rings count their pushes by (`cache::large_push`).
    #[inline(always)]
    pub fn push_here_head(&self, slot: usize, p: *mut u8) -> u64 {
        let bc = self.base + slot_offset(slot);
        let ok: u64;
        // SAFETY: as in `pop`: the block of the CPU the section runs on
        // (`cpu < n`), whose head cannot change before the committing
        // store without a restart; an aborted slot write lies outside
        // tail..head.
        unsafe {
            rseq_stack!(
                here;
                push_body!("");
                off = in(reg) self.off,
                n = in(reg) self.n,
                bc = in(reg) bc,
                p = in(reg) p,
                ok = out(reg) ok,
            );
        }
        ok
    }

    /// Moves all of stack `slot` of the CPU the caller runs on into `buf`.
    /// Out of line: one copy of the section for the outbox and the large
    /// rings (each copy is two relocations in every process).
    #[inline(never)]
    pub fn take_here(&self, slot: usize, buf: &mut [usize; CAP_MAX]) -> usize {
        let bc = self.base + slot_offset(slot);
        let got: usize;
        let block: usize;
        // SAFETY: as in `pop`. The copy loop writes only `buf` (ours, at
        // least CAP_MAX words; a count above CAP_MAX, which every push's
        // capacity check rules out, fails the section); a restart redoes
        // it. The one committing store empties the ring only after the
        // whole copy. `{block}` keeps the CPU's block offset, for the
        // count after the section.
        unsafe {
            rseq_stack!(
                here;
                "mov {top}, qword ptr [{q} + {k}]",
                "mov {block}, {q}",
                "lea {q}, [{q} + {k}]",
                "mov {ok}, qword ptr [{q} + 8]",
                "sub {ok}, {top}",
                "jz 7f",
                "cmp {ok}, {cap}",
                "ja 7f",
                "xor {i:e}, {i:e}",
                "9:",
                "lea {t}, [{top} + {i}]",
                "and {t:e}, dword ptr [{q} + 20]",
                "mov {t}, qword ptr [{q} + {t} * 8 + 64]",
                "mov qword ptr [{buf} + {i} * 8], {t}",
                "add {i:e}, 1",
                "cmp {i}, {ok}",
                "jb 9b",
                "add {top}, {ok}",
                "mov qword ptr [{q}], {top}";
                cap = const CAP_MAX,
                i = out(reg) _,
                off = in(reg) self.off,
                n = in(reg) self.n,
                bc = in(reg) bc,
                buf = in(reg) buf.as_mut_ptr(),
                top = out(reg) _,
                t = out(reg) _,
                block = out(reg) block,
                ok = out(reg) got,
            );
        }
        if got != 0 {
            // Counted after the commit (an add inside the section counted
            // twice when the kernel restarted it after the add), atomic:
            // the thread may run elsewhere by now.
            let w = (self.base + block + slot_offset(slot) + BULK_POPS_AT)
                as *const core::sync::atomic::AtomicU64;
            // SAFETY: `block` is the offset of the block of the CPU the
            // section ran on (< n, mapped); the ring's header holds the
            // aligned u64 at `BULK_POPS_AT`, which sections never write.
            unsafe { (*w).fetch_add(got as u64, core::sync::atomic::Ordering::Relaxed) };
        }
        got
    }
}
