//! slabprof: reads the heap profiles that slaballoc writes with
//! `SLABALLOC_PROF=1` (gperftools' `heap_v2` text format with the process's
//! `/proc/self/maps` appended) and turns them into what people use:
//!
//! * a table of the allocation sites holding the most live bytes, with
//!   function names and, where the binaries have debug information,
//!   file:line (symbols through `addr2line`, inlined frames included);
//! * a flame graph of the live heap by call stack (`--svg`, with `inferno`);
//! * pprof's `profile.proto`, gzipped (`--pprof`), for `go tool pprof`.
//!
//! Each sample stands for about `rate` bytes: an allocation of `s` bytes was
//! sampled with probability `1 - exp(-s / rate)`, so a sample of `s` bytes
//! counts as `1 / (1 - exp(-s / rate))` blocks and that many times `s`
//! bytes (the `heap_v2` scaling, as pprof does it).

mod pprof;
mod profile;
mod symbols;

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;

const USAGE: &str = "\
usage: slabprof [options] PROFILE.heap

Reads a heap profile written by slaballoc (SLABALLOC_PROF=1) and prints the
allocation sites that hold the most live bytes (estimated from the samples).

options:
  --top N          sites to print (default 20; 0: all)
  --stacks         print each site's call stacks under it
  --svg FILE       write a flame graph of the live heap (SVG)
  --pprof FILE     write the profile in pprof's format (gzipped profile.proto)
  --folded FILE    write the folded stacks (flamegraph.pl's input)
  -h, --help       this help
";

struct Args {
    top: usize,
    stacks: bool,
    svg: Option<String>,
    pprof: Option<String>,
    folded: Option<String>,
    input: String,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        top: 20,
        stacks: false,
        svg: None,
        pprof: None,
        folded: None,
        input: String::new(),
    };
    let mut it = std::env::args().skip(1);
    let mut input = None;
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value (see slabprof --help)"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--top" => {
                let v = value("--top")?;
                a.top = v
                    .parse()
                    .map_err(|_| format!("--top {v}: expected a number of sites"))?;
            }
            "--stacks" => a.stacks = true,
            "--svg" => a.svg = Some(value("--svg")?),
            "--pprof" => a.pprof = Some(value("--pprof")?),
            "--folded" => a.folded = Some(value("--folded")?),
            s if s.starts_with('-') && s.len() > 1 => {
                return Err(format!("unknown option {s} (see slabprof --help)"))
            }
            s => {
                if input.replace(s.to_string()).is_some() {
                    return Err("give one profile file (see slabprof --help)".into());
                }
            }
        }
    }
    a.input = input.ok_or("no profile file given (see slabprof --help)")?;
    Ok(Some(a))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("slabprof: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slabprof: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.input)
        .map_err(|e| format!("cannot read {}: {e}", args.input))?;
    let prof = profile::parse(&text).map_err(|e| format!("{}: {e}", args.input))?;
    let mut syms = symbols::Symbolizer::new(&prof.maps);
    let stacks = resolve(&prof, &mut syms);

    print_top(&args.input, &prof, &stacks, args.top, args.stacks);

    if args.svg.is_some() || args.folded.is_some() {
        let folded = folded_lines(&stacks);
        if let Some(path) = &args.folded {
            let mut out = String::new();
            for l in &folded {
                out.push_str(l);
                out.push('\n');
            }
            std::fs::write(path, out).map_err(|e| format!("cannot write {path}: {e}"))?;
            println!("folded stacks: {path}");
        }
        if let Some(path) = &args.svg {
            let mut opts = inferno::flamegraph::Options::default();
            opts.title = format!("live heap (estimated), {}", args.input);
            opts.count_name = "bytes".into();
            opts.name_type = "Site:".into();
            let mut svg = Vec::new();
            inferno::flamegraph::from_lines(&mut opts, folded.iter().map(|s| s.as_str()), &mut svg)
                .map_err(|e| format!("flame graph: {e}"))?;
            std::fs::write(path, svg).map_err(|e| format!("cannot write {path}: {e}"))?;
            println!("flame graph: {path}");
        }
    }
    if let Some(path) = &args.pprof {
        let data = pprof::encode(&prof, &stacks);
        let f = std::fs::File::create(path).map_err(|e| format!("cannot write {path}: {e}"))?;
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        gz.write_all(&data)
            .and_then(|_| gz.finish().map(|_| ()))
            .map_err(|e| format!("cannot write {path}: {e}"))?;
        println!("pprof profile: {path} (go tool pprof -top {path})");
    }
    Ok(())
}

/// One frame, symbolised: an address may give several (inlined functions,
/// innermost first).
#[derive(Clone, Debug)]
pub struct Frame {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// The mapping the address falls in (index into `Profile::maps`).
    pub mapping: Option<usize>,
}

impl Frame {
    fn site(&self) -> String {
        match (&self.file, self.line) {
            (Some(f), Some(l)) => format!("{} ({}:{l})", self.function, short_path(f)),
            _ => self.function.clone(),
        }
    }
}

fn short_path(f: &str) -> &str {
    f.rsplit('/').next().unwrap_or(f)
}

/// A sample with its stack symbolised, allocator frames dropped: `frames[0]`
/// is the allocation site (innermost), each address's frames innermost first.
pub struct Stack {
    /// Estimated live blocks and bytes this sample stands for.
    pub count: f64,
    pub bytes: f64,
    /// (address, frames at that address), innermost address first.
    pub addrs: Vec<(u64, Vec<Frame>)>,
}

/// True for frames of the allocator itself and of the C library's entry
/// points into it: what sits above the program's allocation site.
fn is_allocator(f: &Frame, prof: &profile::Profile) -> bool {
    if let Some(m) = f.mapping {
        let path = &prof.maps[m].path;
        if short_path(path).starts_with("libslaballoc") {
            return true;
        }
    }
    let n = f.function.as_str();
    n.starts_with("slaballoc::")
        || n.starts_with("<slaballoc::")
        || n.starts_with("core::")
        || n.starts_with("__libc_")
        || n.starts_with("sa_")
        || matches!(
            n,
            "malloc"
                | "calloc"
                | "realloc"
                | "reallocarray"
                | "free"
                | "memalign"
                | "posix_memalign"
                | "aligned_alloc"
                | "valloc"
                | "pvalloc"
                | "__posix_memalign"
                | "backtrace"
                | "__backtrace"
        )
}

fn resolve(prof: &profile::Profile, syms: &mut symbols::Symbolizer) -> Vec<Stack> {
    let mut out = Vec::with_capacity(prof.samples.len());
    for s in &prof.samples {
        let (count, bytes) = prof.scale(s.count, s.bytes);
        let mut addrs: Vec<(u64, Vec<Frame>)> = s
            .addrs
            .iter()
            .enumerate()
            // Return addresses point after the call: look up the call itself.
            .map(|(i, &a)| {
                let probe = if i == 0 { a } else { a.saturating_sub(1) };
                (a, syms.frames(probe))
            })
            .collect();
        // Drop the allocator's frames: everything up to the last frame that
        // is the allocator's among the leading ones.
        let skip = addrs
            .iter()
            .position(|(_, fs)| !fs.iter().all(|f| is_allocator(f, prof)))
            .unwrap_or(0);
        addrs.drain(..skip);
        // And, at an address whose frames mix the allocator's inlined into
        // the program's, the allocator's.
        if let Some((_, fs)) = addrs.first_mut() {
            if let Some(k) = fs.iter().position(|f| !is_allocator(f, prof)) {
                fs.drain(..k);
            }
        }
        out.push(Stack {
            count,
            bytes,
            addrs,
        });
    }
    out
}

fn site_of(s: &Stack) -> String {
    s.addrs
        .first()
        .and_then(|(_, fs)| fs.first())
        .map(Frame::site)
        .unwrap_or_else(|| "(unknown)".into())
}

pub fn human(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn print_top(name: &str, prof: &profile::Profile, stacks: &[Stack], top: usize, show: bool) {
    // (An empty f64 sum is -0.0: start from 0.0.)
    let total_bytes: f64 = 0.0 + stacks.iter().map(|s| s.bytes).sum::<f64>();
    let total_count: f64 = 0.0 + stacks.iter().map(|s| s.count).sum::<f64>();
    struct Site {
        bytes: f64,
        count: f64,
        samples: usize,
        stacks: HashMap<String, f64>,
    }
    let mut sites: HashMap<String, Site> = HashMap::new();
    for s in stacks {
        let e = sites.entry(site_of(s)).or_insert(Site {
            bytes: 0.0,
            count: 0.0,
            samples: 0,
            stacks: HashMap::new(),
        });
        e.bytes += s.bytes;
        e.count += s.count;
        e.samples += 1;
        if show {
            let path: Vec<String> = s
                .addrs
                .iter()
                .flat_map(|(_, fs)| fs.iter().map(|f| f.site()))
                .collect();
            *e.stacks.entry(path.join("\n        <- ")).or_default() += s.bytes;
        }
    }
    let mut v: Vec<(String, Site)> = sites.into_iter().collect();
    v.sort_by(|a, b| b.1.bytes.total_cmp(&a.1.bytes).then(a.0.cmp(&b.0)));
    println!(
        "{name}: {} (pid {}), one sample per {} allocated on average",
        prof.program().unwrap_or("?"),
        pid_from_name(name).map_or("?".into(), |p| p.to_string()),
        human(prof.rate as f64)
    );
    println!(
        "live heap (estimated): {} in {:.0} blocks, from {} samples",
        human(total_bytes),
        total_count,
        stacks.len()
    );
    println!();
    println!(
        "{:>12} {:>6} {:>10} {:>8}  allocation site",
        "live bytes", "%", "blocks", "samples"
    );
    let n = if top == 0 { v.len() } else { top.min(v.len()) };
    for (site, s) in &v[..n] {
        let pct = if total_bytes > 0.0 {
            100.0 * s.bytes / total_bytes
        } else {
            0.0
        };
        println!(
            "{:>12} {:>5.1}% {:>10.0} {:>8}  {site}",
            human(s.bytes),
            pct,
            s.count,
            s.samples
        );
        if show {
            let mut st: Vec<_> = s.stacks.iter().collect();
            st.sort_by(|a, b| b.1.total_cmp(a.1));
            for (path, b) in st {
                println!("{:>12}        {path}", human(*b));
            }
        }
    }
    if n < v.len() {
        println!("... {} more sites (--top 0 shows all)", v.len() - n);
    }
}

/// The pid in a dump's name (`PREFIX.PID[.peak.N|.N].heap`).
fn pid_from_name(name: &str) -> Option<u32> {
    let base = short_path(name).strip_suffix(".heap")?;
    base.split('.').find_map(|p| p.parse().ok())
}

/// Folded stacks, root first: `main;f;g BYTES`.
fn folded_lines(stacks: &[Stack]) -> Vec<String> {
    let mut agg: HashMap<String, f64> = HashMap::new();
    for s in stacks {
        let mut names: Vec<String> = s
            .addrs
            .iter()
            .flat_map(|(_, fs)| fs.iter().map(|f| f.function.replace(';', ":")))
            .collect();
        names.reverse();
        if names.is_empty() {
            names.push("(unknown)".into());
        }
        *agg.entry(names.join(";")).or_default() += s.bytes;
    }
    let mut v: Vec<String> = agg
        .into_iter()
        .filter(|(_, b)| *b >= 0.5)
        .map(|(k, b)| format!("{k} {}", b.round() as u64))
        .collect();
    v.sort();
    v
}
