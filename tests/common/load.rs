//! A load generator as a user would point one at the mesh: from the host, a new TCP
//! connection per request to a lab node's address, counting every request that did not
//! come back with the demo page. Bounded in rate (one request per PAUSE per address) and
//! in time (it stops by itself after MAX_RUN).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PAUSE: Duration = Duration::from_millis(20);
const MAX_RUN: Duration = Duration::from_mins(5);

/// One HTTP GET with a new connection: the demo page's "Hello from HOST" host.
pub fn hello(addr: &str) -> Result<String, String> {
    let sa: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(2))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
        .map_err(|e| format!("sending to {addr}: {e}"))?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    reply
        .lines()
        .find_map(|l| l.strip_prefix("Hello from "))
        .map(|h| h.trim().to_string())
        .ok_or_else(|| format!("{addr} answered {reply:?}"))
}

/// `n` requests to `addr`: the hosts that answered, and the failures.
pub fn spread(addr: &str, n: usize) -> (BTreeSet<String>, Vec<String>) {
    let (mut hosts, mut failures) = (BTreeSet::new(), vec![]);
    for _ in 0..n {
        match hello(addr) {
            Ok(h) => {
                hosts.insert(h);
            }
            Err(e) => failures.push(e),
        }
    }
    (hosts, failures)
}

/// What one address's loop saw.
#[derive(Debug)]
pub struct Tally {
    pub addr: String,
    pub made: usize,
    pub failures: Vec<String>,
    pub hosts: BTreeSet<String>,
}

/// Request loops running against some addresses until `finish`.
pub struct Load {
    stop: Arc<AtomicBool>,
    loops: Vec<JoinHandle<Tally>>,
}

impl Load {
    pub fn start(addrs: &[String]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let loops = addrs
            .iter()
            .map(|addr| {
                let (addr, stop) = (addr.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut tally = Tally {
                        addr: addr.clone(),
                        made: 0,
                        failures: vec![],
                        hosts: BTreeSet::new(),
                    };
                    let start = Instant::now();
                    while !stop.load(Ordering::Relaxed) && start.elapsed() < MAX_RUN {
                        match hello(&addr) {
                            Ok(h) => {
                                tally.hosts.insert(h);
                            }
                            Err(e) => tally
                                .failures
                                .push(format!("at {:.2?}: {e}", start.elapsed())),
                        }
                        tally.made += 1;
                        std::thread::sleep(PAUSE);
                    }
                    tally
                })
            })
            .collect();
        Load { stop, loops }
    }

    /// Stops the loops and returns what each saw.
    pub fn finish(mut self) -> Vec<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        std::mem::take(&mut self.loops)
            .into_iter()
            .map(|l| l.join().expect("request loop"))
            .collect()
    }

    /// Stops the loops and asserts none of their requests failed; returns the number
    /// made, after printing it for the record.
    pub fn finish_without_failures(self, during: &str) -> usize {
        let tallies = self.finish();
        let made: usize = tallies.iter().map(|t| t.made).sum();
        let failed: Vec<String> = tallies
            .iter()
            .flat_map(|t| t.failures.iter().map(move |f| format!("{}: {f}", t.addr)))
            .collect();
        eprintln!("{during}: {made} requests sent, {} failed", failed.len());
        assert!(
            failed.is_empty(),
            "{during}: {} of {made} requests failed: {failed:#?}",
            failed.len()
        );
        made
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
