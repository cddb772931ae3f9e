//! Queries in batches: one recvmmsg(2) takes up to BATCH queued queries and one
//! sendmmsg(2) returns their answers, so a busy resolver makes two system calls per batch
//! instead of two per query. The buffers are per worker thread (a batch is received,
//! answered and sent within one poll, with no await between), so a node with many tasks
//! does not hold a batch's memory per task.

use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::RawFd;

pub const BATCH: usize = 32;
/// The largest query read whole; a longer one is cut and answered FORMERR.
const PACKET: usize = 4096;

pub struct Batch {
    packets: Vec<[u8; PACKET]>,
    lens: [usize; BATCH],
    /// Each query's source, kept as the kernel gave it, to send the answer back to.
    sources: [libc::sockaddr_storage; BATCH],
    source_lens: [libc::socklen_t; BATCH],
    /// The answer to each query, and whether there is one.
    answers: Vec<Vec<u8>>,
    answered: [bool; BATCH],
    received: usize,
}

thread_local! {
    static BATCHES: RefCell<Option<Box<Batch>>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's batch.
pub fn with<R>(f: impl FnOnce(&mut Batch) -> R) -> R {
    BATCHES.with(|cell| {
        let mut slot = cell.borrow_mut();
        let batch = slot.get_or_insert_with(|| {
            Box::new(Batch {
                packets: vec![[0; PACKET]; BATCH],
                lens: [0; BATCH],
                // SAFETY: an all-zero sockaddr_storage is a valid (AF_UNSPEC) value.
                sources: unsafe { std::mem::zeroed() },
                source_lens: [0; BATCH],
                answers: (0..BATCH).map(|_| Vec::with_capacity(512)).collect(),
                answered: [false; BATCH],
                received: 0,
            })
        });
        f(batch)
    })
}

impl Batch {
    /// Receives what is queued on `fd`, without waiting: how many queries (WouldBlock
    /// when none).
    pub fn receive(&mut self, fd: RawFd) -> std::io::Result<usize> {
        self.received = 0;
        // SAFETY: zeroed iovec and mmsghdr are plain C structs; every pointer set below
        // points into `self`, which outlives the call.
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..BATCH {
            iov[i].iov_base = self.packets[i].as_mut_ptr().cast();
            iov[i].iov_len = PACKET;
            let hdr = &mut msgs[i].msg_hdr;
            hdr.msg_name = (&raw mut self.sources[i]).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &raw mut iov[i];
            hdr.msg_iovlen = 1;
        }
        // SAFETY: msgs holds BATCH valid headers whose buffers live through the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, msg) in msgs.iter().take(n).enumerate() {
            self.lens[i] = (msg.msg_len as usize).min(PACKET);
            self.source_lens[i] = msg.msg_hdr.msg_namelen;
            self.answered[i] = false;
        }
        self.received = n;
        Ok(n)
    }

    /// Query `i` of the batch, with the buffer for its answer.
    pub fn query(&mut self, i: usize) -> (&[u8], &mut Vec<u8>) {
        (&self.packets[i][..self.lens[i]], &mut self.answers[i])
    }

    /// Marks query `i` answered: its answer goes out with the batch.
    pub fn answered(&mut self, i: usize) {
        self.answered[i] = true;
    }

    /// Where query `i` came from (IPv4: the resolver listens on 127.0.0.11).
    pub fn source(&self, i: usize) -> Option<SocketAddr> {
        let storage = &self.sources[i];
        if i32::from(storage.ss_family) != libc::AF_INET {
            return None;
        }
        // SAFETY: the kernel wrote a sockaddr_in, as ss_family says.
        let sin = unsafe { &*(&raw const *storage).cast::<libc::sockaddr_in>() };
        let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
        Some(SocketAddr::V4(SocketAddrV4::new(
            ip,
            u16::from_be(sin.sin_port),
        )))
    }

    /// Sends every answer of the batch in one call (more when the socket takes only
    /// part); answers the socket cannot take now are dropped, as a full queue drops
    /// datagrams: the client asks again.
    pub fn send(&mut self, fd: RawFd) {
        // SAFETY: as in receive; the headers point into `self`.
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let mut n = 0;
        for i in (0..self.received).filter(|&i| self.answered[i]) {
            iov[n].iov_base = self.answers[i].as_mut_ptr().cast();
            iov[n].iov_len = self.answers[i].len();
            let hdr = &mut msgs[n].msg_hdr;
            hdr.msg_name = (&raw mut self.sources[i]).cast();
            hdr.msg_namelen = self.source_lens[i];
            hdr.msg_iov = &raw mut iov[n];
            hdr.msg_iovlen = 1;
            n += 1;
        }
        let mut sent = 0;
        while sent < n {
            // SAFETY: msgs[sent..n] are valid headers over live buffers.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    msgs[sent..].as_mut_ptr(),
                    (n - sent) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                sent += r as usize;
                continue;
            }
            let e = std::io::Error::last_os_error();
            tracing::debug!("sending a DNS answer: {e}");
            if e.kind() == std::io::ErrorKind::WouldBlock {
                return;
            }
            // That one answer could not go (its client is unreachable): the rest can.
            sent += 1;
        }
    }
}
