//! The dump format: gperftools' heap profile (`heap_v2`), then
//! `MAPPED_LIBRARIES:` and the process's `/proc/self/maps`.
//!
//! ```text
//! heap profile: 188: 607360 [188: 607360] @ heap_v2/524288
//! 1: 4096 [1: 4096] @ 0x7f196d008cd2 0x7f196d008c73 0x560eaefbb177 ...
//!
//! MAPPED_LIBRARIES:
//! 560eaefba000-560eaefbb000 r--p 00000000 08:01 1234 /tmp/sites
//! ```

pub struct Sample {
    /// Sampled blocks and their requested bytes (live ones).
    pub count: u64,
    pub bytes: u64,
    /// Return addresses, innermost first.
    pub addrs: Vec<u64>,
}

pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub offset: u64,
    pub path: String,
}

pub struct Profile {
    /// Mean bytes between samples.
    pub rate: u64,
    pub samples: Vec<Sample>,
    pub maps: Vec<Mapping>,
}

impl Profile {
    /// Estimated (blocks, bytes) that `count` samples of `bytes` stand for.
    pub fn scale(&self, count: u64, bytes: u64) -> (f64, f64) {
        if count == 0 {
            return (0.0, 0.0);
        }
        let avg = bytes as f64 / count as f64;
        let p = 1.0 - (-avg / self.rate as f64).exp();
        if p <= 0.0 {
            return (count as f64, bytes as f64);
        }
        (count as f64 / p, bytes as f64 / p)
    }

    /// The program: the first mapping with a path (the executable).
    pub fn program(&self) -> Option<&str> {
        self.maps
            .iter()
            .find(|m| m.path.starts_with('/'))
            .map(|m| m.path.as_str())
    }
}

fn hex(s: &str) -> Result<u64, String> {
    let t = s.strip_prefix("0x").unwrap_or(s);
    u64::from_str_radix(t, 16).map_err(|_| format!("bad address {s:?}"))
}

/// `N: BYTES` of a sample line or the header.
fn count_bytes(s: &str) -> Result<(u64, u64), String> {
    let (c, b) = s
        .split_once(':')
        .ok_or_else(|| format!("expected COUNT: BYTES, got {s:?}"))?;
    let c = c.trim().parse().map_err(|_| format!("bad count {c:?}"))?;
    let b = b
        .trim()
        .parse()
        .map_err(|_| format!("bad byte count {b:?}"))?;
    Ok((c, b))
}

pub fn parse(text: &str) -> Result<Profile, String> {
    let mut lines = text.lines();
    let header = lines.next().ok_or("empty file")?;
    let rest = header
        .strip_prefix("heap profile:")
        .ok_or("not a heap profile (no \"heap profile:\" header)")?;
    let (_, rate) = rest
        .split_once("@ heap_v2/")
        .ok_or("not a sampled (heap_v2) heap profile")?;
    let rate: u64 = rate
        .trim()
        .parse()
        .map_err(|_| format!("bad sampling rate {rate:?}"))?;
    if rate == 0 {
        return Err("sampling rate 0".into());
    }
    let mut samples = Vec::new();
    let mut maps = Vec::new();
    let mut in_maps = false;
    for (n, line) in lines.enumerate() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if line == "MAPPED_LIBRARIES:" {
            in_maps = true;
            continue;
        }
        if in_maps {
            if let Some(m) = parse_map(line) {
                maps.push(m);
            }
            continue;
        }
        let err = |e: String| format!("line {}: {e}", n + 2);
        let (head, stack) = line
            .split_once('@')
            .ok_or_else(|| err("a sample without a stack".into()))?;
        let head = head.trim();
        let live = head.split('[').next().unwrap_or(head);
        let (count, bytes) = count_bytes(live.trim()).map_err(err)?;
        let addrs = stack
            .split_whitespace()
            .map(hex)
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        samples.push(Sample {
            count,
            bytes,
            addrs,
        });
    }
    Ok(Profile {
        rate,
        samples,
        maps,
    })
}

/// One line of /proc/PID/maps.
fn parse_map(line: &str) -> Option<Mapping> {
    let mut f = line.split_whitespace();
    let range = f.next()?;
    let _perms = f.next()?;
    let offset = u64::from_str_radix(f.next()?, 16).ok()?;
    let _dev = f.next()?;
    let _inode = f.next()?;
    let path = f.collect::<Vec<_>>().join(" ");
    let (a, b) = range.split_once('-')?;
    Some(Mapping {
        start: u64::from_str_radix(a, 16).ok()?,
        end: u64::from_str_radix(b, 16).ok()?,
        offset,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_dump() {
        let t = "heap profile: 2: 5000 [2: 5000] @ heap_v2/524288\n\
                 1: 4096 [1: 4096] @ 0x10 0x20\n\
                 1: 904 [1: 904] @ 0x30\n\
                 \nMAPPED_LIBRARIES:\n\
                 00400000-00452000 r-xp 00001000 08:02 173521 /usr/bin/prog name\n";
        let p = parse(t).unwrap();
        assert_eq!(p.rate, 524288);
        assert_eq!(p.samples.len(), 2);
        assert_eq!(p.samples[0].addrs, vec![0x10, 0x20]);
        assert_eq!(p.samples[1].bytes, 904);
        assert_eq!(p.maps.len(), 1);
        assert_eq!(p.maps[0].offset, 0x1000);
        assert_eq!(p.maps[0].path, "/usr/bin/prog name");
        assert_eq!(p.program(), Some("/usr/bin/prog name"));
    }

    #[test]
    fn scaling_undoes_the_sampling_probability() {
        let p = Profile {
            rate: 1000,
            samples: vec![],
            maps: vec![],
        };
        // A block of the rate's size is sampled with probability 1 - 1/e.
        let (c, b) = p.scale(1, 1000);
        let want = 1.0 / (1.0 - (-1.0f64).exp());
        assert!((c - want).abs() < 1e-9);
        assert!((b - 1000.0 * want).abs() < 1e-6);
        // Huge blocks are always sampled: they count once.
        let (c, _) = p.scale(1, 1 << 40);
        assert!((c - 1.0).abs() < 1e-9);
    }

    #[test]
    fn refuses_other_files() {
        assert!(parse("").is_err());
        assert!(parse("hello\n").is_err());
        assert!(parse("heap profile: 1: 2 [1: 2] @ heapprofile\n").is_err());
    }
}
