use super::*;

#[inline(never)]
#[cold]
#[link_section = ".text_cold"]
pub(super) fn report_text(t: &Totals, sink: &mut dyn FnMut(&[u8])) {
    let mut b = Buf::<256>::new();
    b.str("slaballoc statistics: ");
    who(&mut b);
    b.str("\n  options         ");
    for (i, (k, v, n)) in super::process::options().iter().enumerate() {
        if i > 0 {
            b.str(" ");
        }
        b.str(k).str("=");
        if v.is_empty() {
            b.u64(*n);
        } else {
            b.str(v);
        }
    }
    b.str("\n");
    sink(b.bytes());
    let m = super::process::memory(t);
    let h = |label: &str, v: u64, note: &str| {
        let mut b = Buf::<192>::new();
        b.str("  ").str(label);
        for _ in label.len()..16 {
            b.str(" ");
        }
        let mut n = Buf::<24>::new();
        super::process::human(&mut n, v);
        b.raw(n.bytes());
        for _ in n.bytes().len()..11 {
            b.str(" ");
        }
        b.str(note).str("\n");
        b
    };
    sink(
        h(
            "resident",
            m.resident,
            "the whole process (/proc/self/statm)",
        )
        .bytes(),
    );
    sink(h("resident peak", m.resident_peak, "(VmHWM)").bytes());
    sink(
        h(
            "committed",
            m.committed,
            "slabs, large blocks, dirty free runs, huge mappings",
        )
        .bytes(),
    );
    sink(h("reserved", m.reserved, "arenas and huge mappings").bytes());
    sink(
        h(
            "in use",
            t.bytes_in_use,
            "handed out (chunks at their class size, blocks in pages)",
        )
        .bytes(),
    );
    sink(
        h(
            "large kept",
            t.large_kept,
            "freed large blocks kept for reuse",
        )
        .bytes(),
    );
    sink(
        h(
            "metadata",
            m.metadata,
            "page maps, descriptors, zones, cache blocks (reserved)",
        )
        .bytes(),
    );
    let mut b = Buf::<192>::new();
    b.str("  calls           ")
        .u64(t.mallocs)
        .str(" mallocs (")
        .u64(t.cache_allocs)
        .str(" from the caches), ")
        .u64(t.frees)
        .str(" frees (")
        .u64(t.cache_frees)
        .str(" into the caches)\n");
    sink(b.bytes());
    let mut b = Buf::<96>::new();
    b.str("  zones by        ")
        .str(crate::cpu::id_kind())
        .str("\n");
    sink(b.bytes());
    for (k, v) in fields(t) {
        let mut b = Buf::<96>::new();
        b.str("  ").str(k);
        for _ in k.len()..16 {
            b.str(" ");
        }
        b.u64(v).str("\n");
        sink(b.bytes());
    }
    sink(b"  class   size      mallocs        frees         live   slabs   util%\n");
    let calls = class_calls();
    for (i, c) in classes().iter().enumerate() {
        if c.allocs == 0 && c.slabs == 0 && calls[i].0 == 0 {
            continue;
        }
        let mut b = Buf::<128>::new();
        b.str("  ");
        pad(&mut b, i as u64, 5);
        pad(&mut b, c.size, 7);
        pad(&mut b, calls[i].0, 13);
        pad(&mut b, calls[i].1, 13);
        pad(&mut b, c.in_use, 13);
        pad(&mut b, c.slabs, 8);
        // Percent, one decimal.
        let v = utilisation(i, c);
        let mut u = Buf::<16>::new();
        u.u64(v / 100).str(".").u64(v % 100 / 10);
        for _ in u.bytes().len()..8 {
            b.str(" ");
        }
        b.raw(u.bytes()).str("\n");
        sink(b.bytes());
    }
    sink(b"  cpu       allocs  local_frees remote_frees notifications\n");
    for i in 0..crate::cpu::nzones() {
        let c = cpu(i);
        let mut b = Buf::<128>::new();
        b.str("  ");
        pad(&mut b, i as u64, 3);
        pad(&mut b, c.allocs, 13);
        pad(&mut b, c.local_frees, 13);
        pad(&mut b, c.remote_frees, 13);
        pad(&mut b, c.notifications, 14);
        b.str("\n");
        sink(b.bytes());
    }
    let mut header = false;
    crate::types::for_each(|ty| {
        if !header {
            sink(b"  type                          bytes      objects        limit     failures\n");
            header = true;
        }
        let mut b = Buf::<256>::new();
        b.str("  ").raw(ty.name);
        for _ in ty.name.len()..24 {
            b.str(" ");
        }
        pad_i(&mut b, ty.bytes, 13);
        pad_i(&mut b, ty.objects, 13);
        pad(&mut b, ty.limit as u64, 13);
        pad(&mut b, ty.failures, 13);
        b.str("\n");
        sink(b.bytes());
    });
}

#[cold]
#[link_section = ".text_cold"]
fn pad<const N: usize>(b: &mut Buf<N>, v: u64, width: usize) {
    let mut t = Buf::<24>::new();
    t.u64(v);
    for _ in t.bytes().len()..width {
        b.str(" ");
    }
    b.raw(t.bytes());
}

#[cold]
#[link_section = ".text_cold"]
fn pad_i<const N: usize>(b: &mut Buf<N>, v: i64, width: usize) {
    let mut t = Buf::<24>::new();
    t.i64(v);
    for _ in t.bytes().len()..width {
        b.str(" ");
    }
    b.raw(t.bytes());
}
