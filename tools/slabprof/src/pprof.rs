//! pprof's `profile.proto` (github.com/google/pprof/proto/profile.proto),
//! encoded by hand: a handful of messages of varints, strings and packed
//! numbers. Sample types `inuse_objects`/count and `inuse_space`/bytes, the
//! estimated (unsampled) values, as pprof shows heap profiles.

use crate::profile::Profile;
use crate::Stack;
use std::collections::HashMap;

/// A protobuf message being written.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(((field as u64) << 3) | wire as u64);
    }

    /// A varint field (int64 values are written as their two's complement).
    fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, 0);
            self.varint(v);
        }
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn msg(&mut self, field: u32, m: Msg) {
        self.bytes(field, &m.0);
    }

    fn packed(&mut self, field: u32, vs: &[u64]) {
        if vs.is_empty() {
            return;
        }
        let mut m = Msg::default();
        for &v in vs {
            m.varint(v);
        }
        self.bytes(field, &m.0);
    }
}

/// The string table: index 0 is "".
struct Strings {
    list: Vec<String>,
    index: HashMap<String, u64>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Strings {
            list: Vec::new(),
            index: HashMap::new(),
        };
        s.get("");
        s
    }

    fn get(&mut self, s: &str) -> u64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len() as u64;
        self.list.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

fn value_type(strings: &mut Strings, ty: &str, unit: &str) -> Msg {
    let mut m = Msg::default();
    m.uint(1, strings.get(ty));
    m.uint(2, strings.get(unit));
    m
}

/// The uncompressed `Profile` message.
pub fn encode(prof: &Profile, stacks: &[Stack]) -> Vec<u8> {
    let mut strings = Strings::new();
    let mut out = Msg::default();
    // 1: sample_type
    let t = value_type(&mut strings, "inuse_objects", "count");
    out.msg(1, t);
    let t = value_type(&mut strings, "inuse_space", "bytes");
    out.msg(1, t);

    let mut functions: HashMap<(String, String), u64> = HashMap::new();
    let mut function_msgs = Vec::new();
    let mut locations: HashMap<u64, u64> = HashMap::new();
    let mut location_msgs = Vec::new();
    let mut used_maps: HashMap<usize, u64> = HashMap::new();

    // 2: sample
    for s in stacks {
        let mut ids = Vec::with_capacity(s.addrs.len());
        for (addr, frames) in &s.addrs {
            let next = locations.len() as u64 + 1;
            let id = *locations.entry(*addr).or_insert_with(|| {
                let mut loc = Msg::default();
                loc.uint(1, next);
                if let Some(mi) = frames.first().and_then(|f| f.mapping) {
                    let n = used_maps.len() as u64 + 1;
                    let mid = *used_maps.entry(mi).or_insert(n);
                    loc.uint(2, mid);
                }
                loc.uint(3, *addr);
                // Innermost first; the last line is the caller the others
                // were inlined into (as profile.proto says).
                for f in frames {
                    let file = f.file.clone().unwrap_or_default();
                    let fk = (f.function.clone(), file.clone());
                    let nf = functions.len() as u64 + 1;
                    let fid = *functions.entry(fk).or_insert_with(|| {
                        let mut fm = Msg::default();
                        fm.uint(1, nf);
                        fm.uint(2, strings.get(&f.function));
                        fm.uint(3, strings.get(&f.function));
                        fm.uint(4, strings.get(&file));
                        function_msgs.push(fm);
                        nf
                    });
                    let mut line = Msg::default();
                    line.uint(1, fid);
                    line.uint(2, f.line.unwrap_or(0) as u64);
                    loc.msg(4, line);
                }
                location_msgs.push(loc);
                next
            });
            ids.push(id);
        }
        let mut sm = Msg::default();
        sm.packed(1, &ids);
        sm.packed(2, &[s.count.round() as u64, s.bytes.round() as u64]);
        out.msg(2, sm);
    }
    // 3: mapping
    let mut maps: Vec<(usize, u64)> = used_maps.into_iter().collect();
    maps.sort_by_key(|&(_, id)| id);
    for (mi, id) in maps {
        let m = &prof.maps[mi];
        let mut mm = Msg::default();
        mm.uint(1, id);
        mm.uint(2, m.start);
        mm.uint(3, m.end);
        mm.uint(4, m.offset);
        mm.uint(5, strings.get(&m.path));
        // Symbolised here: pprof need not look for the binaries.
        mm.uint(7, 1);
        mm.uint(8, 1);
        mm.uint(9, 1);
        mm.uint(10, 1);
        out.msg(3, mm);
    }
    // 4: location, 5: function
    for l in location_msgs {
        out.msg(4, l);
    }
    for f in function_msgs {
        out.msg(5, f);
    }
    // 11: period_type, 12: period (mean bytes between samples)
    let pt = value_type(&mut strings, "space", "bytes");
    // 6: string_table (written last: every string is known by now)
    for s in &strings.list {
        out.bytes(6, s.as_bytes());
    }
    out.msg(11, pt);
    out.uint(12, prof.rate);
    out.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_fields() {
        let mut m = Msg::default();
        m.varint(300);
        assert_eq!(m.0, [0xac, 0x02]);
        let mut m = Msg::default();
        m.uint(1, 150);
        assert_eq!(m.0, [0x08, 0x96, 0x01]);
        let mut m = Msg::default();
        m.bytes(2, b"testing");
        assert_eq!(m.0, [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']);
        let mut m = Msg::default();
        m.packed(4, &[3, 270, 86942]);
        assert_eq!(m.0, [0x22, 0x06, 0x03, 0x8e, 0x02, 0x9e, 0xa7, 0x05]);
    }
}
