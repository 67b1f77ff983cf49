//! Addresses to function names and file:line: the mapping an address falls
//! in (from the dump's maps) gives the file and the offset in it, the file's
//! loadable segments turn that into the address the debug information and
//! the symbol table use, and `addr2line` looks it up (inlined functions
//! included; the symbol table where there is no debug information).

use crate::profile::Mapping;
use crate::Frame;
use object::{Object, ObjectSegment};
use std::collections::HashMap;

struct Binary {
    loader: addr2line::Loader,
    /// Loadable segments: (file offset, file size, virtual address).
    segments: Vec<(u64, u64, u64)>,
}

pub struct Symbolizer<'a> {
    maps: &'a [Mapping],
    binaries: HashMap<String, Option<Binary>>,
    cache: HashMap<u64, Vec<Frame>>,
}

fn load(path: &str) -> Option<Binary> {
    let data = std::fs::read(path).ok()?;
    let obj = object::File::parse(&*data).ok()?;
    let segments = obj
        .segments()
        .map(|s| {
            let (off, size) = s.file_range();
            (off, size, s.address())
        })
        .collect();
    let loader = addr2line::Loader::new(path).ok()?;
    Some(Binary { loader, segments })
}

impl<'a> Symbolizer<'a> {
    pub fn new(maps: &'a [Mapping]) -> Self {
        Symbolizer {
            maps,
            binaries: HashMap::new(),
            cache: HashMap::new(),
        }
    }

    /// The frames at `addr`, innermost first (never empty).
    pub fn frames(&mut self, addr: u64) -> Vec<Frame> {
        if let Some(f) = self.cache.get(&addr) {
            return f.clone();
        }
        let f = self.lookup(addr);
        self.cache.insert(addr, f.clone());
        f
    }

    fn lookup(&mut self, addr: u64) -> Vec<Frame> {
        let Some(mi) = self
            .maps
            .iter()
            .position(|m| m.start <= addr && addr < m.end)
        else {
            return vec![unknown(format!("{addr:#x}"), None)];
        };
        let m = &self.maps[mi];
        let file_off = addr - m.start + m.offset;
        let label = format!(
            "{}+{file_off:#x}",
            m.path.rsplit('/').next().unwrap_or(&m.path)
        );
        if !m.path.starts_with('/') {
            return vec![unknown(label, Some(mi))];
        }
        let bin = self
            .binaries
            .entry(m.path.clone())
            .or_insert_with(|| load(&m.path));
        let Some(bin) = bin else {
            return vec![unknown(label, Some(mi))];
        };
        let Some(&(soff, _, vaddr)) = bin
            .segments
            .iter()
            .find(|&&(off, size, _)| off <= file_off && file_off < off + size)
        else {
            return vec![unknown(label, Some(mi))];
        };
        let probe = vaddr + (file_off - soff);
        let mut out = Vec::new();
        if let Ok(mut it) = bin.loader.find_frames(probe) {
            while let Ok(Some(fr)) = it.next() {
                let Some(name) = fr
                    .function
                    .as_ref()
                    .and_then(|n| n.demangle().ok().map(|s| s.into_owned()))
                else {
                    continue;
                };
                out.push(Frame {
                    function: strip_hash(&name),
                    file: fr.location.as_ref().and_then(|l| l.file.map(String::from)),
                    line: fr.location.as_ref().and_then(|l| l.line),
                    mapping: Some(mi),
                });
            }
        }
        if out.is_empty() {
            let function = match bin.loader.find_symbol(probe) {
                Some(s) => strip_hash(&addr2line::demangle_auto(s.into(), None)),
                None => label,
            };
            let loc = bin.loader.find_location(probe).ok().flatten();
            out.push(Frame {
                function,
                file: loc.as_ref().and_then(|l| l.file.map(String::from)),
                line: loc.as_ref().and_then(|l| l.line),
                mapping: Some(mi),
            });
        }
        out
    }
}

fn unknown(label: String, mapping: Option<usize>) -> Frame {
    Frame {
        function: label,
        file: None,
        line: None,
        mapping,
    }
}

/// Drops the `::h0123456789abcdef` hash of a legacy Rust symbol.
fn strip_hash(s: &str) -> String {
    match s.rfind("::h") {
        Some(i) if s.len() - i == 19 && s[i + 3..].bytes().all(|b| b.is_ascii_hexdigit()) => {
            s[..i].to_string()
        }
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stripped() {
        assert_eq!(strip_hash("a::b::h0123456789abcdef"), "a::b");
        assert_eq!(strip_hash("a::b"), "a::b");
        assert_eq!(strip_hash("main"), "main");
    }
}
