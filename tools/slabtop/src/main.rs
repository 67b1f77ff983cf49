//! slabtop: list the processes that run under slaballoc, and watch one.

use slabtop::{find, render_list, render_report, request_prof_dump, scan, snapshot};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

const HELP: &str = "\
slabtop: live view of the processes that run under slaballoc (yours only)

usage:
  slabtop                  list them (pid, program, resident memory, version)
  slabtop PID              show PID's report, refreshed every second (Ctrl-C stops)
  slabtop --once PID       show PID's report once
  slabtop --json PID       print PID's report as JSON (the SLABALLOC_STATS=json report)
  slabtop --prof-dump PID  ask PID to write its heap profile (SLABALLOC_PROF)
  slabtop --clean          remove the files of processes that are gone, print nothing

options:
  -n, --interval SECS      refresh period (default 1)
  -w, --wait SECS          how long to wait for the process to answer (default 1)
  -h, --help               this text

A process answers at its next allocator slow path (a cache refill, a block
above 16 KiB) or, with SLABALLOC_BACKGROUND=1, within 250 ms; an idle one
shows its last report and its age. SLABALLOC_LIVE=0 turns the live view off.
";

#[derive(Debug, PartialEq)]
enum Mode {
    List,
    Watch,
    Once,
    Json,
    ProfDump,
    Clean,
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("slabtop: {msg}");
    ExitCode::from(2)
}

fn secs(v: Option<String>, what: &str) -> Result<Duration, String> {
    let v = v.ok_or_else(|| format!("{what} needs a value (seconds)"))?;
    match v.parse::<f64>() {
        Ok(s) if s > 0.0 && s < 86400.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("{what}: expected a number of seconds, got {v:?}")),
    }
}

fn main() -> ExitCode {
    let mut mode = Mode::List;
    let mut pid: Option<u32> = None;
    let mut interval = Duration::from_secs(1);
    let mut wait = Duration::from_secs(1);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return ExitCode::SUCCESS;
            }
            "--once" => mode = Mode::Once,
            "--json" => mode = Mode::Json,
            "--prof-dump" => mode = Mode::ProfDump,
            "--clean" => mode = Mode::Clean,
            "-n" | "--interval" => match secs(args.next(), &a) {
                Ok(d) => interval = d,
                Err(e) => return fail(&e),
            },
            "-w" | "--wait" => match secs(args.next(), &a) {
                Ok(d) => wait = d,
                Err(e) => return fail(&e),
            },
            _ if a.starts_with('-') => {
                return fail(&format!("unknown option {a} (see slabtop --help)"))
            }
            _ => match a.parse::<u32>() {
                Ok(p) if pid.is_none() => pid = Some(p),
                _ => return fail(&format!("unexpected argument {a:?} (see slabtop --help)")),
            },
        }
    }
    if mode == Mode::List && pid.is_some() {
        mode = Mode::Watch;
    }
    match mode {
        Mode::List => {
            let v = scan();
            if v.is_empty() {
                println!("no process of yours runs under slaballoc (with its live view on)");
            } else {
                print!("{}", render_list(&v));
            }
            ExitCode::SUCCESS
        }
        Mode::Clean => {
            scan();
            ExitCode::SUCCESS
        }
        _ => {
            let Some(pid) = pid else {
                return fail("this mode needs a PID (see slabtop --help)");
            };
            let Some(e) = find(pid) else {
                eprintln!(
                    "slabtop: no process {pid} of yours runs under slaballoc with its live view on \
                     (slabtop without arguments lists those that do)"
                );
                return ExitCode::from(1);
            };
            match mode {
                Mode::ProfDump => match request_prof_dump(&e) {
                    Ok(()) => {
                        println!(
                            "asked {pid} ({}) for a heap profile: it writes it at its next \
                             allocator slow path if it runs with SLABALLOC_PROF=1",
                            e.program
                        );
                        ExitCode::SUCCESS
                    }
                    Err(err) => fail(&format!("{}: {err}", e.path.display())),
                },
                Mode::Json => match snapshot(&e, wait) {
                    Ok(Some(s)) => {
                        let mut j = s.json;
                        if let Some(o) = j.as_object_mut() {
                            let age = s.written.elapsed().unwrap_or_default();
                            o.insert(
                                "snapshot".into(),
                                serde_json::json!({
                                    "fresh": s.fresh,
                                    "age_ms": age.as_millis() as u64,
                                }),
                            );
                        }
                        println!("{j}");
                        ExitCode::SUCCESS
                    }
                    Ok(None) => no_report(pid, wait),
                    Err(err) => fail(&format!("{}: {err}", e.path.display())),
                },
                _ => loop {
                    match snapshot(&e, wait) {
                        Ok(Some(s)) => {
                            let page = render_report(&s);
                            if mode == Mode::Once {
                                print!("{page}");
                                return ExitCode::SUCCESS;
                            }
                            // Home, clear, page.
                            print!("\x1b[H\x1b[2J{page}");
                            let _ = std::io::stdout().flush();
                        }
                        Ok(None) if mode == Mode::Once => return no_report(pid, wait),
                        Ok(None) => {
                            println!("\x1b[H\x1b[2J{pid} ({}): no report yet, waiting", e.program);
                            let _ = std::io::stdout().flush();
                        }
                        Err(_) if !e.path.exists() => {
                            println!("\n{pid} ({}) has exited", e.program);
                            return ExitCode::SUCCESS;
                        }
                        Err(err) => return fail(&format!("{}: {err}", e.path.display())),
                    }
                    std::thread::sleep(interval);
                    if !e.path.exists() {
                        println!("\n{pid} ({}) has exited", e.program);
                        return ExitCode::SUCCESS;
                    }
                },
            }
        }
    }
}

fn no_report(pid: u32, wait: Duration) -> ExitCode {
    eprintln!(
        "slabtop: {pid} has not written a report yet: it made no allocator slow-path call in {:.1} s \
         (try a longer --wait, or run it with SLABALLOC_BACKGROUND=1)",
        wait.as_secs_f64()
    );
    ExitCode::from(1)
}
