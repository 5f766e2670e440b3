//! Crash safety: a bounded load of increments on several objects, the
//! server killed with `kill -9` at random moments over several cycles.
//! Every acknowledged increment must be stored, and none that was never
//! sent: acknowledged <= stored <= attempted, for every object.

use std::{
    collections::HashMap,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use rand::{RngExt, SeedableRng, rngs::StdRng};

use serde_json::json;

use crate::support::{BinaryServer, post_json};

const OBJECTS: usize = 4;
const CYCLES: usize = 4;

#[derive(Default)]
struct Tally {
    attempted: AtomicU64,
    acknowledged: AtomicU64,
}

#[tokio::test]
async fn kill_9_under_load_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().to_str().unwrap().to_string();
    let tallies: Arc<Vec<Tally>> = Arc::new((0..OBJECTS).map(|_| Tally::default()).collect());
    let mut rng = StdRng::seed_from_u64(9);

    for _ in 0..CYCLES {
        let server = BinaryServer::start(&["--storage", &storage]);
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..OBJECTS)
            .map(|object| {
                let (base, stop, tallies) = (server.base.clone(), stop.clone(), tallies.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let url = format!("{base}/rpc/COUNTER/c{object}/increment");
                    // Bounded: a few hundred requests per cycle at most.
                    for _ in 0..400 {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        tallies[object].attempted.fetch_add(1, Ordering::SeqCst);
                        let sent = client.post(&url).body("[1]").send().await;
                        let Ok(response) = sent else { break };
                        if response.status() == 200 && response.bytes().await.is_ok() {
                            tallies[object].acknowledged.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.random_range(80..400))).await;
        server.kill();
        stop.store(true, Ordering::SeqCst);
        for client in clients {
            client.await.unwrap();
        }
    }

    let server = BinaryServer::start(&["--storage", &storage]);
    for (object, tally) in tallies.iter().enumerate() {
        let stored = post_json(&server.base, &format!("/rpc/COUNTER/c{object}/value"), "[]")
            .await
            .result()
            .as_u64()
            .unwrap();
        let acknowledged = tally.acknowledged.load(Ordering::SeqCst);
        let attempted = tally.attempted.load(Ordering::SeqCst);
        assert!(
            acknowledged > 0,
            "object {object}: the load reached the server"
        );
        assert!(
            acknowledged <= stored && stored <= attempted,
            "object {object}: acknowledged {acknowledged}, stored {stored}, attempted {attempted}"
        );
    }
}

/// Whether strace can trace here (setup.sh installs it; a sandbox without
/// ptrace cannot use it).
fn can_trace() -> bool {
    Command::new("strace")
        .args(["-e", "trace=none", "true"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The paths of the files whose `fsync` or `fdatasync` completed in
/// `lines` (the output of `strace -f -y`, each descriptor followed by its
/// path, a call that another thread interrupted split in two lines), with
/// the index of the line where each completed.
fn completed_syncs(lines: &[&str]) -> Vec<(usize, String)> {
    let mut pending = HashMap::new();
    let mut done = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let Some((pid, call)) = line.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        if call.starts_with("fsync(") || call.starts_with("fdatasync(") {
            let Some((_, rest)) = call.split_once('<') else {
                continue;
            };
            let path = rest
                .split_once('>')
                .map_or(rest, |(path, _)| path)
                .to_string();
            if call.contains("<unfinished") {
                pending.insert(pid.to_string(), path);
            } else if call.ends_with("= 0") {
                done.push((index, path));
            }
        } else if call.contains("sync resumed>") && call.ends_with("= 0") {
            done.extend(pending.remove(pid).map(|path| (index, path)));
        }
    }
    done
}

/// The index of the last line of `lines` where a `pwrite64` to a file whose
/// path matches went into the file.
fn last_write(lines: &[&str], path: &dyn Fn(&str) -> bool) -> Option<usize> {
    lines.iter().rposition(|line| {
        line.split_once(' ')
            .map(|(_, call)| call.trim_start())
            .and_then(|call| call.strip_prefix("pwrite64("))
            .and_then(|call| call.split_once('<'))
            .and_then(|(_, rest)| rest.split_once('>'))
            .is_some_and(|(file, _)| path(file))
    })
}

/// The output of `strace -f -y` (syncs, writes, sends and `mkdir`s) of a
/// server on a fresh storage directory, started with `flags`, that answered
/// one RPC at `path`, which must answer `expected`; `None` (the test is
/// skipped) where strace cannot trace.
async fn trace_one_rpc(path: &str, flags: &[&str], expected: serde_json::Value) -> Option<String> {
    if !can_trace() {
        eprintln!("skipped: strace cannot trace on this machine");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("trace");
    let mut command = Command::new("strace");
    command
        .args([
            "-f",
            "-y",
            "-e",
            "trace=fsync,fdatasync,write,writev,pwrite64,sendto,sendmsg,mkdir,mkdirat",
        ])
        .arg("-o")
        .arg(&log)
        .arg(env!("CARGO_BIN_EXE_go-go-objects"))
        .arg("--storage")
        .arg(dir.path().join("storage"))
        .args(flags);
    let mut server = BinaryServer::start_command(command);
    let reply = post_json(&server.base, path, "[1]").await;
    assert_eq!(reply.result(), expected);
    // strace leaves its tracee running when it is killed: kill the server.
    let strace = server.child.id();
    let tracee = std::fs::read_to_string(format!("/proc/{strace}/task/{strace}/children"))
        .unwrap()
        .trim()
        .to_string();
    assert!(
        Command::new("kill")
            .args(["-9", &tracee])
            .status()
            .unwrap()
            .success()
    );
    server.child.wait().unwrap();
    Some(std::fs::read_to_string(&log).unwrap())
}

/// Whether `path` is an object's database file.
fn is_object_database(path: &str) -> bool {
    path.ends_with(".sqlite") && path.contains("/objects/")
}

/// Whether `path` is an object's write-ahead log.
fn is_object_log(path: &str) -> bool {
    path.ends_with(".sqlite-wal") && path.contains("/objects/")
}

/// The index of the line in `lines` where the response was sent.
fn response_line(lines: &[&str]) -> usize {
    lines
        .iter()
        .position(|l| l.contains("HTTP/1.1 200"))
        .unwrap_or_else(|| panic!("no response in the trace:\n{}", lines.join("\n")))
}

#[tokio::test]
async fn a_new_objects_first_write_is_acknowledged_after_every_file_it_needs_is_synced() {
    let Some(trace) = trace_one_rpc("/rpc/COUNTER/first/increment", &[], json!(1)).await else {
        return;
    };
    let lines: Vec<&str> = trace.lines().collect();
    let acknowledged = response_line(&lines);
    let synced = completed_syncs(&lines[..acknowledged]);
    let synced_after = |after: usize, path: &dyn Fn(&str) -> bool| {
        synced.iter().any(|(at, p)| *at > after && path(p))
    };
    // Without its first page on disk SQLite would delete the log, and the
    // acknowledged write with it; each file is synced after its last write.
    let first_page = last_write(&lines[..acknowledged], &is_object_database)
        .unwrap_or_else(|| panic!("the first page is written:\n{trace}"));
    assert!(
        synced_after(first_page, &is_object_database),
        "the database file is synced after its first page, before the response: {synced:?}"
    );
    let commit = last_write(&lines[..acknowledged], &is_object_log)
        .unwrap_or_else(|| panic!("the log is written:\n{trace}"));
    assert!(
        synced_after(commit, &is_object_log),
        "the write-ahead log is synced after the commit, before the response: {synced:?}"
    );
    assert!(
        synced_after(0, &|p| p.contains("/objects/") && !p.contains(".sqlite")),
        "the directory that holds both is synced before the response: {synced:?}"
    );
    // `objects` and `objects/<hh>` are new: each is synced into its parent
    // after it is made.
    let made: Vec<(usize, &str)> = lines[..acknowledged]
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("mkdir") && l.ends_with("= 0"))
        .filter_map(|(at, l)| Some((at, l.split('"').nth(1)?)))
        .collect();
    assert!(
        made.iter()
            .filter(|(_, dir)| dir.contains("/objects"))
            .count()
            >= 2,
        "objects and objects/<hh> are made: {made:?}"
    );
    for (at, dir) in made {
        let parent = std::path::Path::new(dir).parent().unwrap();
        assert!(
            synced_after(at, &|p| std::path::Path::new(p) == parent),
            "{} is synced after {dir} is made, before the response: {synced:?}",
            parent.display()
        );
    }
}

#[tokio::test]
async fn a_new_object_that_only_reads_answers_without_syncing_its_database() {
    let Some(trace) = trace_one_rpc("/rpc/COUNTER/reader/value", &[], json!(0)).await else {
        return;
    };
    let lines: Vec<&str> = trace.lines().collect();
    let answered = response_line(&lines);
    assert!(
        last_write(&lines[..answered], &is_object_database).is_some(),
        "the reader's database was created, its first page written:\n{trace}"
    );
    // Its database was created (the actor opens it as it starts), and its
    // first page and identity written, with nothing to acknowledge yet.
    let synced = completed_syncs(&lines[..answered]);
    assert!(
        !synced
            .iter()
            .any(|(_, p)| p.contains("/objects/") && p.contains(".sqlite")),
        "no database file or log of the reader is synced: {synced:?}"
    );
}

#[tokio::test]
async fn with_normal_durability_a_new_database_syncs_its_first_page_when_it_is_made() {
    let Some(trace) = trace_one_rpc(
        "/rpc/COUNTER/normal/increment",
        &["--durability", "normal"],
        json!(1),
    )
    .await
    else {
        return;
    };
    let lines: Vec<&str> = trace.lines().collect();
    let answered = response_line(&lines);
    let synced = completed_syncs(&lines[..answered]);
    // Commits are not synced with `normal`, but a power failure must not take
    // the first page (and with it every commit in the log).
    let first_page = last_write(&lines[..answered], &is_object_database)
        .unwrap_or_else(|| panic!("the first page is written:\n{trace}"));
    assert!(
        synced
            .iter()
            .any(|(at, p)| *at > first_page && is_object_database(p)),
        "the first page is synced: {synced:?}"
    );
    assert!(
        !synced.iter().any(|(_, p)| is_object_log(p)),
        "the log is not: {synced:?}"
    );
}
