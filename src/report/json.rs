use super::*;

#[inline(never)]
#[cold]
#[link_section = ".text_cold"]
pub(super) fn report_json(t: &Totals, sink: &mut dyn FnMut(&[u8])) {
    sink(b"{\"totals\":{");
    for (i, (k, v)) in fields(t).iter().enumerate() {
        let mut b = Buf::<64>::new();
        if i > 0 {
            b.str(",");
        }
        b.str("\"").str(k).str("\":").u64(*v);
        sink(b.bytes());
    }
    // After "totals", which stays first: readers find the report by its
    // opening `{"totals"`.
    let mut b = Buf::<320>::new();
    b.str("},\n\"zones_by\":\"")
        .str(crate::cpu::id_kind())
        .str("\",\n\"program\":\"");
    json_escape(&mut b, super::process::program());
    b.str("\",\"pid\":")
        .u64(super::process::pid() as u64)
        .str(",\"version\":\"")
        .str(super::process::VERSION)
        .str("\",\n\"options\":{");
    for (i, (k, v, n)) in super::process::options().iter().enumerate() {
        if i > 0 {
            b.str(",");
        }
        b.str("\"").str(k).str("\":");
        if v.is_empty() {
            b.u64(*n);
        } else {
            b.str("\"").str(v).str("\"");
        }
    }
    sink(b.bytes());
    let m = super::process::memory(t);
    let mut b = Buf::<320>::new();
    b.str("},\n\"memory\":{\"resident\":")
        .u64(m.resident)
        .str(",\"resident_peak\":")
        .u64(m.resident_peak)
        .str(",\"committed\":")
        .u64(m.committed)
        .str(",\"reserved\":")
        .u64(m.reserved)
        .str(",\"in_use\":")
        .u64(t.bytes_in_use)
        .str(",\"metadata\":")
        .u64(m.metadata)
        .str(",\"dirty\":")
        .u64(t.bytes_dirty)
        .str(",\"purged\":")
        .u64(t.bytes_purged)
        .str("},\n\"classes\":[");
    sink(b.bytes());
    let calls = class_calls();
    for (i, c) in classes().iter().enumerate() {
        let mut b = Buf::<256>::new();
        if i > 0 {
            b.str(",\n");
        }
        b.str("{\"class\":")
            .u64(i as u64)
            .str(",\"size\":")
            .u64(c.size)
            .str(",\"allocs\":")
            .u64(c.allocs)
            .str(",\"frees\":")
            .u64(c.frees)
            .str(",\"in_use\":")
            .u64(c.in_use)
            .str(",\"slabs\":")
            .u64(c.slabs)
            .str(",\"program_mallocs\":")
            .u64(calls[i].0)
            .str(",\"program_frees\":")
            .u64(calls[i].1)
            .str(",\"utilisation\":");
        let u = utilisation(i, c);
        b.u64(u / 10_000).str(".");
        let frac = u % 10_000;
        for d in [1000, 100, 10] {
            if frac < d {
                b.str("0");
            }
        }
        b.u64(frac).str("}");
        sink(b.bytes());
    }
    sink(b"],\n\"cpus\":[");
    for i in 0..crate::cpu::nzones() {
        let c = cpu(i);
        let mut b = Buf::<160>::new();
        if i > 0 {
            b.str(",\n");
        }
        b.str("{\"cpu\":")
            .u64(i as u64)
            .str(",\"allocs\":")
            .u64(c.allocs)
            .str(",\"local_frees\":")
            .u64(c.local_frees)
            .str(",\"remote_frees\":")
            .u64(c.remote_frees)
            .str(",\"notifications\":")
            .u64(c.notifications)
            .str("}");
        sink(b.bytes());
    }
    sink(b"],\n\"types\":[");
    let mut first = true;
    crate::types::for_each(|ty| {
        let mut b = Buf::<384>::new();
        if !first {
            b.str(",\n");
        }
        first = false;
        b.str("{\"name\":\"");
        json_escape(&mut b, ty.name);
        b.str("\",\"bytes\":")
            .i64(ty.bytes)
            .str(",\"objects\":")
            .i64(ty.objects)
            .str(",\"limit\":")
            .u64(ty.limit as u64)
            .str(",\"failures\":")
            .u64(ty.failures)
            .str("}");
        sink(b.bytes());
    });
    sink(b"]}\n");
}

pub(super) fn json_escape<const N: usize>(b: &mut Buf<N>, s: &[u8]) {
    for &c in s {
        match c {
            b'"' => b.str("\\\""),
            b'\\' => b.str("\\\\"),
            0..=0x1f => {
                b.str("\\u00");
                b.raw(&[
                    b"0123456789abcdef"[(c >> 4) as usize],
                    b"0123456789abcdef"[(c & 15) as usize],
                ])
            }
            _ => b.raw(&[c]),
        };
    }
}
