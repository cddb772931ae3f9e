//! The few system calls the agent makes outside netlink, in one place: entering a network
//! namespace, listing interface addresses, the BPF filesystem, interface indexes.

use std::ffi::CStr;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Where the BPF filesystem is mounted.
pub const BPFFS: &str = "/sys/fs/bpf";

/// Runs `f` on a thread of its own inside the network namespace at `path` (/run/netns/NAME
/// or /proc/PID/ns/net) and returns what `f` returns. Only that thread enters the
/// namespace, and it ends with `f`: no other thread (a pool's least of all) is moved.
pub fn run_in_netns<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    let file = std::fs::File::open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("opening {}: {e}", path.display())))?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns on this scoped thread only; it ends when `f` returns.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    let e = std::io::Error::last_os_error();
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("entering {}: {e}", path.display()),
                    ));
                }
                Ok(f())
            })
            .join()
            .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
    })
}

/// Every IPv4 address of this namespace's interfaces, as (interface, address).
pub fn ipv4_addresses() -> std::io::Result<Vec<(String, Ipv4Addr)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a linked list that is walked read-only and freed once.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut found = Vec::new();
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            if !ifa.ifa_addr.is_null() && i32::from((*ifa.ifa_addr).sa_family) == libc::AF_INET {
                let sin = &*ifa.ifa_addr.cast::<libc::sockaddr_in>();
                let name = CStr::from_ptr(ifa.ifa_name).to_string_lossy().into_owned();
                found.push((name, Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(head);
        Ok(found)
    }
}

/// Mounts the BPF filesystem where it is missing (pins live there).
pub fn ensure_bpffs() -> std::io::Result<()> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let path = c"/sys/fs/bpf";
    // SAFETY: statfs into a zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &raw mut st) } == 0 && st.f_type as i64 == BPF_FS_MAGIC
    {
        return Ok(());
    }
    std::fs::create_dir_all(BPFFS)?;
    let fstype: &CStr = c"bpf";
    // SAFETY: mount with constant, NUL-terminated arguments.
    let mounted = unsafe {
        libc::mount(
            fstype.as_ptr(),
            path.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if mounted != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The index of interface `name` in this namespace.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_listed_with_its_address() {
        let all = ipv4_addresses().unwrap();
        assert!(
            all.iter()
                .any(|(name, ip)| name == "lo" && *ip == Ipv4Addr::LOCALHOST),
            "{all:?}"
        );
        assert_eq!(ifindex("lo"), Some(1));
        assert_eq!(ifindex("no-such-if"), None);
    }
}
