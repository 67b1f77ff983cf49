//! x86-64: the thread pointer, the rseq area (glibc's or our own, in
//! static TLS), and the restartable sequences of the per-CPU cache.
//!
//! Everything here is inline assembly with the rules of one architecture;
//! the modules above see functions (`arch/mod.rs` lists them), and the
//! generic fallback (`arch/generic.rs`) gives the same functions without
//! rseq, so no other module has an architecture `cfg`.
//!
//! ## The sections
//!
//! A section (`rseq_section!`) is the kernel's restartable sequence: a
//! descriptor in section `__rseq_cs` names its start, its end (just after
//! the one committing store) and its abort handler; the thread arms it by
//! storing the descriptor's address in its rseq area's `rseq_cs` (only when
//! it is not there already: see `rseq_section!`), and if it
//! is preempted, migrated or signalled between start and commit, the kernel
//! makes it resume at the abort handler instead, which restarts the whole
//! section. So a section that reads the CPU id from the rseq area and then
//! works on that CPU's stack needs no lock and no atomic instruction. The
//! stack layout they work on is `cache_layout`'s.

use crate::cache_layout::{
    slot_offset, CacheRoot, BULK_POPS_AT, BULK_PUSHES_AT, CAP_AT, CPU_SHIFT, HEADER, HEAD_AT,
    MASK_AT, OUTBOX, ROOT, TAIL_AT,
};

/// Where the sections find `ROOT.id_field` (an address operand, so that it
/// takes no register of its own).
const ROOT_ID_FIELD_AT: usize = core::mem::offset_of!(CacheRoot, id_field);
const ROOT_CPUS_AT: usize = core::mem::offset_of!(CacheRoot, cpus);
const ROOT_BASE_AT: usize = core::mem::offset_of!(CacheRoot, base);
const ROOT_LIMIT_AT: usize = core::mem::offset_of!(CacheRoot, small_limit);

/// True if `size` is below `ROOT.small_limit` (malloc's one test of the
/// cache's state, `cache::below_small_limit`): one compare with the limit
/// in memory, where the compiler, which does not fold an atomic load into
/// a compare, spent a move.
#[inline(always)]
pub fn below_small_limit(size: usize) -> bool {
    // SAFETY: reads one word of `ROOT` and writes only the flags. Acquire,
    // as a load of the field with `Ordering::Acquire` would be (it pairs
    // with `cache::init`'s store of the limit): on x86-64 a plain load
    // acquires, and the block, declared neither `readonly` nor `nomem`, is
    // a compiler barrier too, so no later access of the caller's moves
    // above it.
    unsafe {
        core::arch::asm!(
            "cmp {s}, qword ptr [rip + {g} + {at}]",
            "jae {no}",
            s = in(reg) size,
            g = sym ROOT,
            at = const ROOT_LIMIT_AT,
            no = label {
                return false;
            },
            options(nostack),
        );
    }
    true
}

const _: () = assert!(
    slot_offset(OUTBOX) == 0,
    "the free section's xor names the outbox"
);

core::arch::global_asm!(".weak __rseq_offset");

// Our own `struct rseq` (see `cpu`'s module doc), in static TLS: 32 bytes,
// 32-byte aligned (the kernel's requirement for a 32-byte area):
// cpu_id_start 0, cpu_id -1, rseq_cs 0, flags 0, node_id 0, mm_cid -1, and
// 4 bytes of padding. Hidden: one per library copy, never exported.
core::arch::global_asm!(
    ".pushsection .tdata, \"awT\", @progbits",
    ".balign 32",
    ".globl slaballoc_own_rseq",
    ".hidden slaballoc_own_rseq",
    ".type slaballoc_own_rseq, @tls_object",
    ".size slaballoc_own_rseq, 32",
    "slaballoc_own_rseq:",
    ".long 0, -1",
    ".quad 0",
    ".long 0, 0, -1, 0",
    ".popsection",
);

// The heap profiler's per-thread sampler (`prof`): 16 zero bytes of static
// TLS, hidden like the rseq area.
core::arch::global_asm!(
    ".pushsection .tbss, \"awT\", @nobits",
    ".balign 16",
    ".globl slaballoc_prof_sampler",
    ".hidden slaballoc_prof_sampler",
    ".type slaballoc_prof_sampler, @tls_object",
    ".size slaballoc_prof_sampler, 16",
    "slaballoc_prof_sampler:",
    ".zero 16",
    ".popsection",
);

/// Bytes of the profiler's per-thread slot.
pub const PROF_TLS_SIZE: usize = 16;

/// The calling thread's profiler slot: `PROF_TLS_SIZE` bytes, 16-byte
/// aligned, zero when the thread starts, live as long as the thread.
#[inline(always)]
pub fn prof_tls() -> *mut u8 {
    let off: isize;
    // SAFETY: loads the GOT entry of our TLS symbol, which holds its offset
    // from the thread pointer (as `own_area_offset`); nothing is written.
    unsafe {
        core::arch::asm!("mov {}, qword ptr [rip + slaballoc_prof_sampler@GOTTPOFF]", out(reg) off,
                         options(nostack, readonly, preserves_flags, pure));
    }
    thread_pointer().wrapping_add_signed(off) as *mut u8
}

/// `RSEQ_SIG`: the signature the kernel checks before each abort handler.
/// The sections carry it, and glibc registers its area with the same one on
/// x86-64.
pub const RSEQ_SIG: u32 = 0x5305_3053;

/// True: this architecture has the cache's sections.
pub const HAS_SECTIONS: bool = true;

/// Reads the thread pointer: a unique, non-zero id of the calling thread that
/// costs one instruction (`fs:0` holds the TCB's self pointer on x86-64).
#[inline(always)]
pub fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: on x86-64 Linux, fs:0 holds the thread control block's own
    // address for every thread (glibc's `tcbhead_t.tcb`).
    unsafe {
        core::arch::asm!("mov {}, qword ptr fs:0", out(reg) tp,
                         options(nostack, readonly, preserves_flags, pure));
    }
    tp
}

/// glibc's `__rseq_offset` (the offset of its rseq area from the thread
/// pointer), or None where the running glibc does not define it (< 2.35).
/// The symbol is weak, loaded through the GOT: 0 when undefined.
pub fn glibc_rseq_offset() -> Option<isize> {
    let p: *const isize;
    // SAFETY: loads the GOT entry of the weak symbol: its address, or 0
    // when the running glibc does not define it.
    unsafe {
        core::arch::asm!("mov {}, qword ptr [rip + __rseq_offset@GOTPCREL]", out(reg) p,
                         options(nostack, readonly, preserves_flags));
    }
    // SAFETY: p, when not null, is the address of glibc's `__rseq_offset`
    // variable, written once by glibc before any code of ours runs.
    (!p.is_null()).then(|| unsafe { *p })
}

/// The offset of our own area from the thread pointer: the same for every
/// thread (static TLS, initial-exec model), read from the GOT entry the
/// dynamic linker filled (`R_X86_64_TPOFF64`).
pub fn own_area_offset() -> Option<isize> {
    let off: isize;
    // SAFETY: loads the GOT entry of our TLS symbol, which holds its offset
    // from the thread pointer (negative: variant II TLS); no memory is
    // written.
    unsafe {
        core::arch::asm!("mov {}, qword ptr [rip + slaballoc_own_rseq@GOTTPOFF]", out(reg) off,
                         options(nostack, readonly, preserves_flags, pure));
    }
    Some(off)
}

/// The i32 at `field` in this thread's rseq area.
///
/// # Safety
/// `off` is glibc's `__rseq_offset` or our own area's offset, and
/// `field + 4` at most 32 (the size glibc and we register).
#[inline(always)]
pub unsafe fn read_rseq_i32(off: isize, field: usize) -> i32 {
    let v: i32;
    // SAFETY: by the contract, fs:[off] is this thread's rseq area (static
    // TLS, live as long as the thread) and the field lies inside it.
    unsafe {
        core::arch::asm!("mov {0:e}, dword ptr fs:[{1} + {2}]", out(reg) v, in(reg) off,
                         in(reg) field, options(nostack, readonly, preserves_flags));
    }
    v
}

/// One rseq critical section. The body runs between labels 3 (start) and 4
/// (just after the committing store), sets `{ok}` to non-zero on success and
/// leaves with `jmp 7f` to fail. The descriptor (`struct rseq_cs`) goes to
/// `.data.rel.ro`, read-only once relocated (RELRO: nothing can rewrite
/// where an abort jumps to), on the page the GOT's relocations copy
/// anyway (in a section of its own, its 68 relocations made every
/// process copy one more page of ours); the abort handler (label 5,
/// preceded by the signature glibc registered) and the failure exit live
/// out of line in `.text.unlikely`, so that the successful path runs
/// straight through. The handler restarts from label 2. Numeric labels
/// only, as the block is
/// inlined in many places; none made of 0s and 1s alone, which Intel syntax
/// reads as binary numbers.
///
/// Arming: the section's first instruction (label 3, inside the range)
/// compares `rseq_cs` with the descriptor, and stores it only when it
/// differs. A thread that runs the same section again, or a batch of
/// them, stores nothing: a store on every operation cost 0.6 ns of a
/// 5.4 ns malloc+free pair in batches of 25. The compare and the store
/// are inside the range, where they are safe; before the start they
/// would not be: the kernel clears `rseq_cs` when it preempts the thread
/// outside the range, so a check made there could pass and the section
/// then run unarmed. Inside, if the compare read our descriptor, a
/// preemption after it finds `rseq_cs` still ours (the kernel clears it
/// only outside the range, or when it aborts us) and aborts. If the
/// compare read anything else, a preemption before the store finds
/// someone else's descriptor (or none), whose range does not hold the IP,
/// and at most clears it; the store then arms ours before the body reads
/// anything that depends on the CPU.
/// `@exit [...]` replaces the failure exit: `jmp {fail}` to a `label`
/// operand, for a section with no output (free's push), so that the caller
/// tests nothing after a success.
macro_rules! rseq_section {
    ($($body:expr),* ; $($operands:tt)*) => {
        rseq_section!(@exit ["xor {ok:e}, {ok:e}", "jmp 4b"] $($body),* ; $($operands)*)
    };
    (@exit [$($exit:expr),*] $($body:expr),* ; $($operands:tt)*) => {
        core::arch::asm!(
            ".pushsection .data.rel.ro.rseq_cs, \"aw\"",
            ".balign 32",
            "6:",
            ".long 0, 0",
            ".quad 3f, 4f - 3f, 5f",
            ".popsection",
            "2:",
            "lea {q}, [rip + 6b]",
            "3:",
            "cmp qword ptr fs:[{off} + 8], {q}",
            "je 8f",
            "mov qword ptr fs:[{off} + 8], {q}",
            "8:",
            $($body,)*
            "4:",
            ".pushsection .text.unlikely, \"ax\"",
            ".long 0x53053053",
            "5:",
            "jmp 2b",
            "7:",
            $($exit,)*
            ".popsection",
            $($operands)*
            options(nostack),
        )
    };
}

/// An rseq section on a stack of the CPU the section runs on: `here`
/// requires that CPU to be below `{n}` (a CPU with a cache), `owned`
/// requires it to be `{owner}` (the zone whose chunks the stack holds). Both
/// then set `{q}` to that CPU's block offset, and the stack is at `{q} +
/// {k}` (`{k}`: a copy, made inside the section, of `{bc}`, the stack's
/// offset inside a block plus the base, which the caller passes). `root`
/// reads the CPU count, the base and the id field from `ROOT` (address
/// operands): `{q}` is the CPU's block (base included), `{k}` the stack's
/// offset in it, an input for malloc's pop; free's push chooses it inside
/// (its `[...]` of instructions before the shift): `{coff}` if the CPU is
/// `{owner}`, else the outbox's (0). The first `[...]` is the failure exit
/// (see `rseq_section`). The body reads the stack's
/// head at `[{q} + {k}]` (the address needs no add of its own, which would
/// sit between the load of the CPU or the class and the load of the head),
/// then sets `{q}` to the stack and may reuse `{k}` (`pop_body`,
/// `push_body`): every register the section changes is set again inside
/// it, so a restart (from label 2) starts from the same state.
macro_rules! rseq_stack {
    (here; $($body:expr),* ; $($operands:tt)*) => {
        rseq_section!(
            "mov {q}, qword ptr [rip + {g} + {idf}]",
            "mov {q:e}, dword ptr fs:[{off} + {q}]",
            "mov {k}, {bc}",
            "cmp {q:e}, {n:e}",
            "jae 7f",
            "shl {q}, {shift}",
            $($body),* ;
            $($operands)*
            shift = const CPU_SHIFT,
            g = sym ROOT,
            idf = const ROOT_ID_FIELD_AT,
            q = out(reg) _,
            k = out(reg) _,
        )
    };
    (root $exit:tt [$($choose:expr),*]; $($body:expr),* ; $($operands:tt)*) => {
        rseq_section!(@exit $exit
            "mov {q}, qword ptr [rip + {g} + {idf}]",
            "mov {q:e}, dword ptr fs:[{off} + {q}]",
            "cmp {q:e}, dword ptr [rip + {g} + {cpus}]",
            "jae 7f",
            $($choose,)*
            "shl {q}, {shift}",
            "add {q}, qword ptr [rip + {g} + {basef}]",
            $($body),* ;
            $($operands)*
            shift = const CPU_SHIFT,
            idf = const ROOT_ID_FIELD_AT,
            cpus = const ROOT_CPUS_AT,
            basef = const ROOT_BASE_AT,
            g = sym ROOT,
            q = out(reg) _,
        )
    };
    (owned; $($body:expr),* ; $($operands:tt)*) => {
        rseq_section!(
            "mov {q}, qword ptr [rip + {g} + {idf}]",
            "mov {q:e}, dword ptr fs:[{off} + {q}]",
            "mov {k}, {bc}",
            "cmp {q:e}, {owner:e}",
            "jne 7f",
            "shl {q}, {shift}",
            $($body),* ;
            $($operands)*
            shift = const CPU_SHIFT,
            g = sym ROOT,
            idf = const ROOT_ID_FIELD_AT,
            q = out(reg) _,
            k = out(reg) _,
        )
    };
}

/// The body of a pop (for `rseq_stack`): `{ok}` = the chunk in the slot the
/// tail names (the oldest), and the tail plus one is committed from
/// `{top}`; leaves by 7 when the ring is empty (tail = head). `{k}` is only
/// read. `$count` adds instructions before the commit, with `{top}` the
/// new tail (the test pop's count, malloc's prefetch of the next chunk). The
/// header's fields are at the offsets of `cache_layout` (`TAIL_AT` 0,
/// `HEAD_AT` 8, `MASK_AT` 20, `HEADER` 64: asserted below).
macro_rules! pop_body {
    ($count:expr) => {
        concat!(
            "mov {top}, qword ptr [{q} + {k}]\n",
            "lea {q}, [{q} + {k}]\n",
            "cmp {top}, qword ptr [{q} + 8]\n",
            "je 7f\n",
            "mov {ok:e}, {top:e}\n",
            "and {ok:e}, dword ptr [{q} + 20]\n",
            "mov {ok}, qword ptr [{q} + {ok} * 8 + 64]\n",
            "add {top}, 1\n",
            $count,
            "mov qword ptr [{q}], {top}",
        )
    };
}

/// The body of a push of `{p}` (for `rseq_stack`): `{p}` goes to the slot
/// the head names and the head plus one is committed from `{ok}`, so
/// `{ok}` is non-zero on success. Leaves by 7 when the ring holds its
/// capacity (`CAP_AT` 16; 0 until prepared). Clobbers `{k}`. `$count` as
/// in `pop_body`.
macro_rules! push_body {
    ($count:expr) => {
        concat!(
            "mov {ok}, qword ptr [{q} + {k} + 8]\n",
            "lea {q}, [{q} + {k}]\n",
            "mov {k}, {ok}\n",
            "sub {k}, qword ptr [{q}]\n",
            "cmp {k:e}, dword ptr [{q} + 16]\n",
            "jae 7f\n",
            "mov {k:e}, {ok:e}\n",
            "and {k:e}, dword ptr [{q} + 20]\n",
            "mov qword ptr [{q} + {k} * 8 + 64], {p}\n",
            "add {ok}, 1\n",
            $count,
            "mov qword ptr [{q} + 8], {ok}",
        )
    };
}

const _: () = assert!(
    TAIL_AT == 0 && HEAD_AT == 8 && CAP_AT == 16 && MASK_AT == 20,
    "the sections spell the header's offsets as numbers"
);
const _: () = assert!(BULK_POPS_AT == 24 && BULK_PUSHES_AT == 32 && HEADER == 64);

// The sections of malloc's and free's hits, `pop_hot` and `push_free_hot`,
// work on the process's caches (`ROOT`). They read the root themselves
// (address operands), so that a caller holds nothing of it across the
// section but the rseq offset, and make no test of their own for a cache
// that is off: its `cpus` is 0, which the section's compare refuses like
// any CPU without a block. (The tests of the sections point `ROOT` at
// caches of their own, in a child process.)

/// Pops a chunk from the stack at `coff` of the CPU the caller runs on:
/// null if the stack is empty or the CPU has no block.
///
/// # Safety
/// `coff` is a stack offset (`cache_layout::stack_offset`), and `ROOT`'s `off` is the rseq area's offset (`cache::init` set it: the
/// caller read a non-zero `small_limit`, which `init` stores last).
#[inline(always)]
pub unsafe fn pop_hot(coff: usize) -> *mut u8 {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe { pop_hot_tail(coff).0 }
}

/// `pop_hot`, and the stack's tail after the pop (its pops so far, bulk
/// ones included; unset when the pop fails): what the large rings count
/// their pops by (`cache::large_pop`). Malloc's hit path drops it, and
/// with it the register.
///
/// # Safety
/// As for `pop_hot`.
#[inline(always)]
pub unsafe fn pop_hot_tail(coff: usize) -> (*mut u8, u64) {
    let p: usize;
    let tail: u64;
    // SAFETY: the section reads this thread's rseq area (fs:[off]) and
    // the cache block of the CPU it runs on, which is mapped (`cpu <
    // cpus`, compared unsigned so that an unregistered area's -1/-2
    // fails); `coff` keeps it inside that block. Only threads on that
    // CPU write the block, and only inside such sections, so the head
    // and the slot it names cannot change between our reads and the
    // committing store of the new head without the kernel restarting
    // us from label 2. `coff` is read only, so a restart starts from
    // the same state.
    unsafe {
        rseq_stack!(
            root ["xor {ok:e}, {ok:e}", "jmp 4b"] [];
            pop_body!(concat!(
                // Prefetch (for writing) the chunk the next pop will hand
                // out, named by the slot after ours: a ring hands out its
                // oldest, coldest chunk, whose line the caller's free-mark
                // clear and the program then write. A stale slot (the ring
                // empty past ours) names an old chunk or nothing mapped;
                // a prefetch never faults. python_malloc 0.966 (5 runs),
                // xmalloc_like 0.897 (paired), glibc_simple 1.023.
                "mov {pf:e}, {top:e}\n",
                "and {pf:e}, dword ptr [{q} + 20]\n",
                "mov {pf}, qword ptr [{q} + {pf} * 8 + 64]\n",
                "prefetchw byte ptr [{pf}]\n",
            ));
            off = in(reg) ROOT.off.load(core::sync::atomic::Ordering::Relaxed),
            k = in(reg) coff,
            top = out(reg) tail,
            pf = out(reg) _,
            ok = out(reg) p,
        );
    }
    (p as *mut u8, tail)
}

/// Pushes `p`, for `free`, onto the class stack at `coff` of the CPU
/// the caller runs on if that CPU is `owner`, else onto its outbox;
/// false if the CPU has no block or the stack is full. The counter the
/// section bumps is the chosen stack's: a cache free, or a chunk into
/// the outbox.
///
/// # Safety
/// `coff` is a stack offset, and the root's `off` is an offset from the
/// thread pointer whose `struct rseq` the thread may write: the rseq
/// area, or (the cache off) our own unregistered one (`cache::init`
/// sets it before the first slab, hence before any chunk to free).
#[inline(always)]
pub unsafe fn push_free_hot(owner: usize, coff: usize, p: *mut u8) -> bool {
    // SAFETY: the section finds the CPU it runs on below `cpus` (so its
    // block is mapped), then takes that CPU's stack at `coff` if the
    // CPU is `owner` (the only stack a chunk of zone `owner` may
    // enter), else its outbox (which takes any chunk). The choice is
    // made into a scratch register inside the section, so a restart
    // on another CPU chooses again; the kernel restarts the section
    // if the thread leaves the CPU before the committing store of the
    // new head, so the slot write and the commit see a stable head.
    unsafe {
        rseq_stack!(
            root ["jmp {fail}"] [
                "xor {k:e}, {k:e}",
                "cmp {q:e}, {owner:e}",
                "cmove {k}, {coff}"
            ];
            push_body!("");
            off = in(reg) ROOT.off.load(core::sync::atomic::Ordering::Relaxed),
            owner = in(reg) owner,
            coff = in(reg) coff,
            p = in(reg) p,
            ok = out(reg) _,
            k = out(reg) _,
            fail = label {
                return false;
            },
        );
    }
    true
}

// The zone's sections (bulk moves, regear, the outbox's), after the macros
// they are built from.
mod bulk;

/// The free map's chunk check (`pagemap::FreeEntry`): true if
/// `p * mul - s` (wrapping) is below `below`, where `e` points at the
/// entry's `s`, `mul` and `below` (words 0, 1 and 2). One multiply, one
/// subtract and one compare with memory operands: the compiler does not
/// fold atomic loads into them, which cost free's fast path four moves and
/// an add.
///
/// # Safety
/// `e` points at three readable `u64`s (an entry of a registered arena's
/// free map).
#[inline(always)]
pub unsafe fn check_mul_below(e: *const u64, p: usize) -> bool {
    // SAFETY: the caller guarantees the three words are readable; the
    // block reads them (as the entry's Relaxed loads would) and writes only
    // the scratch register and the flags.
    unsafe {
        core::arch::asm!(
            "mov {x}, {p}",
            "imul {x}, qword ptr [{e} + 8]",
            "sub {x}, qword ptr [{e}]",
            "cmp {x}, qword ptr [{e} + 16]",
            "jae {no}",
            p = in(reg) p,
            e = in(reg) e,
            x = out(reg) _,
            no = label {
                return false;
            },
            options(nostack, readonly),
        );
    }
    true
}
