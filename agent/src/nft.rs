//! Runs nftables scripts, in the node's namespace or in another one (a task's), so each
//! ruleset is replaced in one transaction.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Applies `script` with `nft -f -`, inside `netns` when given. The error is nft's own
/// words, which say best what it refused.
pub fn apply(netns: Option<&Path>, script: &str) -> Result<(), String> {
    run(netns, script, false)
}

/// Checks that nft accepts `script`, changing nothing.
pub fn check(script: &str) -> Result<(), String> {
    run(None, script, true)
}

fn run(netns: Option<&Path>, script: &str, check_only: bool) -> Result<(), String> {
    let mut cmd = Command::new("nft");
    if check_only {
        cmd.arg("--check");
    }
    cmd.args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // Kept open until the child has entered it.
    let ns = match netns {
        Some(path) => Some(
            std::fs::File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?,
        ),
        None => None,
    };
    if let Some(file) = &ns {
        let fd = file.as_raw_fd();
        // SAFETY: setns is async-signal-safe; it only changes the child's namespace.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().map_err(|e| format!("running nft: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| format!("writing to nft: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("running nft: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(())
}

/// A script that replaces the rules of table `family name` with those of `body`,
/// atomically. The table and its chains stay (flushed, then refilled in the same
/// transaction): deleting a base chain would unregister its hook for a moment, and a
/// connection starting then would miss its NAT.
pub fn replace_table(family: &str, name: &str, body: &str) -> String {
    format!(
        "table {family} {name} {{}}\nflush table {family} {name}\ntable {family} {name} {{\n{body}}}\n"
    )
}

/// A script that removes table `family name` if it exists.
pub fn remove_table(family: &str, name: &str) -> String {
    format!("table {family} {name} {{}}\ndelete table {family} {name}\n")
}
