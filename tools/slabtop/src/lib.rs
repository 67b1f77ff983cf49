//! slabtop: the live view of processes under slaballoc.
//!
//! Each process under the library keeps a small file, `<dir>/<pid>`, in a
//! per-user directory of mode 0700 (see `src/shm.rs` in the library for the
//! layout): a header, and the last JSON report it wrote there. slabtop asks
//! for a fresh report by setting the page's `request` word; the process
//! writes one at its next allocator slow path, under a sequence lock. A
//! file whose process is gone, or no longer maps it (the pid was reused, or
//! the process called `exec`), is removed.

use serde_json::Value;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Offsets in the page (the library's `shm.rs`).
pub const MAGIC: &[u8; 8] = b"SLABTOP1";
const OFF_PID: u64 = 12;
const OFF_SEQ: u64 = 16;
const OFF_REQUEST: u64 = 24;
const OFF_PROF_REQUEST: u64 = 28;
const OFF_LEN: u64 = 36;
const OFF_TIME: u64 = 40;
const OFF_VERSION: usize = 48;
const OFF_PROGRAM: usize = 64;
const DATA: u64 = 128;
const FILE_SIZE: u64 = 256 * 1024;

/// The directories processes may use, in the library's order, for the
/// user running slabtop.
pub fn dirs() -> Vec<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let mut v = Vec::new();
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
        let p = PathBuf::from(x);
        if p.is_absolute() {
            v.push(p.join("slaballoc"));
        }
    }
    v.push(PathBuf::from(format!("/dev/shm/slaballoc-{uid}")));
    v.push(PathBuf::from(format!("/tmp/slaballoc-{uid}")));
    v
}

/// One process's file, as read from its header.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub pid: u32,
    pub program: String,
    pub version: String,
}

fn cstr(b: &[u8]) -> String {
    let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..n]).into_owned()
}

/// Reads the header of `path`; None if it is not (yet) a live-view page.
pub fn read_entry(path: &Path) -> Option<Entry> {
    let f = File::open(path).ok()?;
    let mut h = [0u8; DATA as usize];
    f.read_exact_at(&mut h, 0).ok()?;
    if &h[..8] != MAGIC {
        return None;
    }
    let pid = u32::from_le_bytes(h[OFF_PID as usize..OFF_PID as usize + 4].try_into().ok()?);
    Some(Entry {
        path: path.to_path_buf(),
        pid,
        program: cstr(&h[OFF_PROGRAM..OFF_PROGRAM + 64]),
        version: cstr(&h[OFF_VERSION..OFF_VERSION + 16]),
    })
}

/// Whether the process that made a file still uses it.
#[derive(Debug, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// The process is gone, or maps another file (pid reused, exec).
    Stale,
    /// Cannot tell (its maps are not readable): left alone.
    Unknown,
}

/// True if a `/proc/<pid>/maps` text maps the file with inode `ino`.
pub fn maps_has_inode(maps: &str, ino: u64) -> bool {
    maps.lines().any(|l| {
        let mut f = l.split_whitespace();
        // address perms offset dev inode path
        f.nth(4).and_then(|i| i.parse::<u64>().ok()) == Some(ino)
    })
}

/// Is the process behind `path` (named after its pid) alive and mapping it?
pub fn liveness(path: &Path, pid: u32) -> Liveness {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return Liveness::Stale;
    };
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Liveness::Stale;
    }
    match fs::read_to_string(format!("/proc/{pid}/maps")) {
        Ok(m) if maps_has_inode(&m, meta.ino()) => Liveness::Alive,
        Ok(_) => {
            // A process between creating its file and mapping it: give it
            // a moment before calling the file stale.
            let young = meta
                .modified()
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|a| a < Duration::from_secs(2));
            if young {
                Liveness::Unknown
            } else {
                Liveness::Stale
            }
        }
        Err(_) => Liveness::Unknown,
    }
}

/// The files in `dir` (named by a pid) and their liveness; stale ones are
/// removed when `clean` is set (they are ours: the directory is).
pub fn scan_dir(dir: &Path, clean: bool) -> Vec<(Entry, Liveness)> {
    let mut out = Vec::new();
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return out;
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o077 != 0 {
        return out;
    }
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let path = e.path();
        let l = liveness(&path, pid);
        if l == Liveness::Stale {
            if clean {
                let _ = fs::remove_file(&path);
            }
            continue;
        }
        if let Some(entry) = read_entry(&path) {
            if entry.pid == pid {
                out.push((entry, l));
            }
        }
    }
    out.sort_by_key(|(e, _)| e.pid);
    out
}

/// Every live process of this user, stale files removed on the way.
pub fn scan() -> Vec<Entry> {
    let mut v: Vec<Entry> = dirs()
        .iter()
        .flat_map(|d| scan_dir(d, true))
        .map(|(e, _)| e)
        .collect();
    v.sort_by_key(|e| e.pid);
    v.dedup_by_key(|e| e.pid);
    v
}

/// The file of process `pid`, if it has one.
pub fn find(pid: u32) -> Option<Entry> {
    scan().into_iter().find(|e| e.pid == pid)
}

/// A report read from a page.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub json: Value,
    /// When the process wrote it.
    pub written: SystemTime,
    /// True if the process wrote it after our request.
    pub fresh: bool,
}

fn read_u64(f: &File, off: u64) -> io::Result<u64> {
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, off)?;
    Ok(u64::from_le_bytes(b))
}

fn read_u32(f: &File, off: u64) -> io::Result<u32> {
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, off)?;
    Ok(u32::from_le_bytes(b))
}

/// Reads the snapshot under the sequence lock: (seq, text), or None if
/// there is none yet, or it is being written.
fn read_consistent(f: &File) -> io::Result<Option<(u64, Vec<u8>, u64)>> {
    for _ in 0..100 {
        let s1 = read_u64(f, OFF_SEQ)?;
        if s1 == 0 {
            return Ok(None);
        }
        if s1 % 2 == 1 {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let len = read_u32(f, OFF_LEN)? as u64;
        let time = read_u64(f, OFF_TIME)?;
        if len > FILE_SIZE - DATA {
            return Err(io::Error::other(format!(
                "the report ({len} bytes) did not fit in the page"
            )));
        }
        let mut data = vec![0u8; len as usize];
        f.read_exact_at(&mut data, DATA)?;
        // Each read is a system call: the second read of seq comes after
        // the data was copied.
        if read_u64(f, OFF_SEQ)? == s1 {
            return Ok(Some((s1, data, time)));
        }
    }
    Ok(None)
}

/// Asks `e`'s process for a report and waits up to `wait` for it; falls
/// back to the last one it wrote (`fresh` false), if any.
pub fn snapshot(e: &Entry, wait: Duration) -> io::Result<Option<Snapshot>> {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&e.path)?;
    let before = read_u64(&f, OFF_SEQ)?;
    f.write_all_at(&1u32.to_le_bytes(), OFF_REQUEST)?;
    let start = Instant::now();
    let mut fresh = false;
    while start.elapsed() < wait {
        let s = read_u64(&f, OFF_SEQ)?;
        if s != before && s % 2 == 0 {
            fresh = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let Some((_, data, time)) = read_consistent(&f)? else {
        return Ok(None);
    };
    let mut json: Value = serde_json::from_slice(&data)
        .map_err(|err| io::Error::other(format!("malformed report: {err}")))?;
    // The kernel's figures are current even when the report is not.
    if let Some(m) = json.get_mut("memory").and_then(Value::as_object_mut) {
        if let Some(r) = resident(e.pid) {
            m.insert("resident".into(), r.into());
        }
        if let Some(r) = resident_peak(e.pid) {
            m.insert("resident_peak".into(), r.into());
        }
    }
    Ok(Some(Snapshot {
        json,
        written: UNIX_EPOCH + Duration::from_nanos(time),
        fresh,
    }))
}

/// Asks `e`'s process to write its heap profile (SLABALLOC_PROF).
pub fn request_prof_dump(e: &Entry) -> io::Result<()> {
    let f = fs::OpenOptions::new().write(true).open(&e.path)?;
    f.write_all_at(&1u32.to_le_bytes(), OFF_PROF_REQUEST)
}

/// `v` bytes in human units: `512 B`, `1.5 KiB`, `12.0 MiB`, ...
pub fn human(v: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if v < 1024 {
        return format!("{v} B");
    }
    let (mut u, mut d) = (0usize, 1u128);
    while u + 1 < UNITS.len() && v as u128 >= d * 1024 {
        d *= 1024;
        u += 1;
    }
    let tenths = (v as u128 * 10 + d / 2) / d;
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[u])
}

/// Resident bytes of `pid` from `/proc/<pid>/statm`.
pub fn resident(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(1) as u64)
}

/// The peak resident bytes of `pid` (`VmHWM` in `/proc/<pid>/status`).
pub fn resident_peak(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = l.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The process list, as printed by `slabtop` without arguments.
pub fn render_list(entries: &[Entry]) -> String {
    let mut s = format!(
        "{:>8}  {:<20} {:>10}  {:<8} {}\n",
        "PID", "PROGRAM", "RSS", "VERSION", "FILE"
    );
    for e in entries {
        let rss = resident(e.pid).map_or_else(|| "-".to_string(), human);
        s += &format!(
            "{:>8}  {:<20} {:>10}  {:<8} {}\n",
            e.pid,
            e.program,
            rss,
            e.version,
            e.path.display()
        );
    }
    s
}

fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// A readable page from a report (the JSON the library writes).
pub fn render_report(snap: &Snapshot) -> String {
    let j = &snap.json;
    let t = &j["totals"];
    let m = &j["memory"];
    let mut s = String::new();
    let age = snap.written.elapsed().unwrap_or_default().as_secs_f64();
    s += &format!(
        "{} (pid {}), slaballoc {}   report {}\n",
        j["program"].as_str().unwrap_or("?"),
        u(j, "pid"),
        j["version"].as_str().unwrap_or("?"),
        if snap.fresh {
            "just now".to_string()
        } else {
            format!(
                "from {age:.1} s ago (no allocator slow path since: its calls hit the \
                 per-CPU caches, or it makes none; with SLABALLOC_BACKGROUND=1 it answers \
                 within 250 ms); resident memory is current"
            )
        }
    );
    if let Some(o) = j["options"].as_object() {
        let opts: Vec<String> = o
            .iter()
            .map(|(k, v)| match v {
                Value::String(x) => format!("{k}={x}"),
                x => format!("{k}={x}"),
            })
            .collect();
        s += &format!("options   {}\n", opts.join(" "));
    }
    s += &format!(
        "memory    resident {} (peak {})  committed {}  reserved {}  in use {}  metadata {}\n",
        human(u(m, "resident")),
        human(u(m, "resident_peak")),
        human(u(m, "committed")),
        human(u(m, "reserved")),
        human(u(m, "in_use")),
        human(u(m, "metadata")),
    );
    s += &format!(
        "calls     {} mallocs ({} from the caches), {} frees ({} into the caches)\n",
        u(t, "mallocs"),
        u(t, "cache_allocs"),
        u(t, "frees"),
        u(t, "cache_frees")
    );
    s += &format!(
        "remote    {} remote frees, {} notifications, {} ring overflows\n",
        u(t, "remote_frees"),
        u(t, "notifications"),
        u(t, "ring_overflows")
    );
    s += &format!(
        "large     {} allocs, {} frees; huge {} allocs, {} frees; type failures {}\n",
        u(t, "large_allocs"),
        u(t, "large_frees"),
        u(t, "huge_allocs"),
        u(t, "huge_frees"),
        u(t, "type_failures")
    );
    s += &format!(
        "\n{:>5} {:>6} {:>12} {:>12} {:>10} {:>10} {:>6} {:>6}\n",
        "class", "size", "mallocs", "frees", "live", "live B", "slabs", "util%"
    );
    if let Some(cl) = j["classes"].as_array() {
        for c in cl {
            if u(c, "slabs") == 0 && u(c, "program_mallocs") == 0 {
                continue;
            }
            let util = c["utilisation"].as_f64().unwrap_or(0.0) * 100.0;
            s += &format!(
                "{:>5} {:>6} {:>12} {:>12} {:>10} {:>10} {:>6} {:>6.1}\n",
                u(c, "class"),
                u(c, "size"),
                u(c, "program_mallocs"),
                u(c, "program_frees"),
                u(c, "in_use"),
                human(u(c, "in_use") * u(c, "size")),
                u(c, "slabs"),
                util
            );
        }
    }
    if let Some(ty) = j["types"].as_array() {
        if !ty.is_empty() {
            s += &format!(
                "\n{:<24} {:>12} {:>10} {:>12} {:>9}\n",
                "type", "bytes", "objects", "limit", "failures"
            );
            for x in ty {
                s += &format!(
                    "{:<24} {:>12} {:>10} {:>12} {:>9}\n",
                    x["name"].as_str().unwrap_or("?"),
                    x["bytes"].as_i64().unwrap_or(0),
                    x["objects"].as_i64().unwrap_or(0),
                    u(x, "limit"),
                    u(x, "failures")
                );
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn units() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(64 << 20), "64.0 MiB");
    }

    #[test]
    fn maps_parsing() {
        let m = "7f0000000000-7f0000040000 rw-s 00000000 00:1a 4242                       /dev/shm/slaballoc-1000/77\n\
                 7f0000040000-7f0000041000 r--p 00000000 08:01 99 /usr/lib/x.so\n";
        assert!(maps_has_inode(m, 4242));
        assert!(maps_has_inode(m, 99));
        assert!(!maps_has_inode(m, 4243));
        assert!(!maps_has_inode("", 1));
    }

    /// A private 0700 directory under the system temp dir.
    fn private_dir(tag: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("slabtop-test-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    fn fake_page(path: &Path, pid: u32, report: &str) {
        let mut page = vec![0u8; DATA as usize];
        page[..8].copy_from_slice(MAGIC);
        page[8..12].copy_from_slice(&1u32.to_le_bytes());
        page[12..16].copy_from_slice(&pid.to_le_bytes());
        page[16..24].copy_from_slice(&2u64.to_le_bytes());
        page[36..40].copy_from_slice(&(report.len() as u32).to_le_bytes());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        page[40..48].copy_from_slice(&(now.as_nanos() as u64).to_le_bytes());
        page[48..53].copy_from_slice(b"0.1.0");
        page[64..68].copy_from_slice(b"fake");
        let mut f = File::create(path).unwrap();
        f.write_all(&page).unwrap();
        f.write_all(report.as_bytes()).unwrap();
    }

    #[test]
    fn dead_process_files_are_removed() {
        let d = private_dir("dead");
        // A pid that existed and is gone: a child we waited for.
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let dead = c.id();
        c.wait().unwrap();
        let stale = d.join(dead.to_string());
        fake_page(&stale, dead, "{}");
        // Our own pid: alive, but it does not map the file: stale too once
        // the file is older than the grace period; young, it is left alone.
        let mine = d.join(std::process::id().to_string());
        fake_page(&mine, std::process::id(), "{}");
        let v = scan_dir(&d, true);
        assert!(!stale.exists(), "the dead process's file was not removed");
        assert!(mine.exists());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].1, Liveness::Unknown);
        assert_eq!(v[0].0.program, "fake");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn open_directories_are_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let d = private_dir("open");
        fake_page(&d.join("1"), 1, "{}");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(scan_dir(&d, true).is_empty());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn snapshot_and_render() {
        let d = private_dir("snap");
        let report = r#"{"totals":{"mallocs":10,"frees":4,"cache_allocs":8,"cache_frees":3},
"zones_by":"mm_cid","program":"fake","pid":1,"version":"0.1.0","options":{"notify":"detach","dirty_max_mb":32},
"memory":{"resident":2097152,"resident_peak":3145728,"committed":1048576,"reserved":67108864,"in_use":4096,"metadata":1024},
"classes":[{"class":0,"size":16,"allocs":64,"frees":0,"in_use":6,"slabs":1,"program_mallocs":10,"program_frees":4,"utilisation":0.0015}],
"cpus":[],"types":[{"name":"bufs","bytes":0,"objects":0,"limit":1048576,"failures":2}]}"#;
        // A pid that is gone: no /proc figures replace the report's.
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let dead = c.id();
        c.wait().unwrap();
        let p = d.join(dead.to_string());
        fake_page(&p, dead, report);
        let e = read_entry(&p).unwrap();
        assert_eq!(
            (e.pid, e.program.as_str(), e.version.as_str()),
            (dead, "fake", "0.1.0")
        );
        // Nobody answers the request: the last report, not fresh.
        let s = snapshot(&e, Duration::from_millis(30)).unwrap().unwrap();
        assert!(!s.fresh);
        assert_eq!(s.json["totals"]["mallocs"], 10);
        let mut b = [0u8; 4];
        File::open(&p)
            .unwrap()
            .read_exact_at(&mut b, OFF_REQUEST)
            .unwrap();
        assert_eq!(u32::from_le_bytes(b), 1, "the request word was not set");
        let text = render_report(&s);
        assert!(text.starts_with("fake (pid 1), slaballoc 0.1.0"), "{text}");
        assert!(text.contains("resident 2.0 MiB (peak 3.0 MiB)"), "{text}");
        assert!(
            text.contains("10 mallocs (8 from the caches), 4 frees"),
            "{text}"
        );
        assert!(text.contains("bufs"), "{text}");
        request_prof_dump(&e).unwrap();
        File::open(&p)
            .unwrap()
            .read_exact_at(&mut b, OFF_PROF_REQUEST)
            .unwrap();
        assert_eq!(u32::from_le_bytes(b), 1);
        fs::remove_dir_all(&d).unwrap();
    }
}
