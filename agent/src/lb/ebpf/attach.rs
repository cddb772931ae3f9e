//! How the TC programs sit on an interface (`shoal daemon --lb-attach`): tcx links, which
//! exist from kernel 6.6 and are pinned so they outlive the agent, or classic TC for the
//! kernels before (Debian 12's 6.1, Ubuntu 22.04's 5.15): a clsact qdisc and a
//! direct-action cls_bpf filter at shoal's own priority and handle. Such a filter holds
//! its program in the kernel with no pin, so it outlives the agent too; a restarted agent
//! swaps its program into the same filter in one netlink call. Either way nothing stops
//! forwarding while the agent restarts, and a node that changes mode drops the other
//! mode's attachment, so no packet meets two programs.

use aya::programs::tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle};
use aya::programs::{SchedClassifier, TcAttachType};
use aya::util::KernelVersion;

use super::super::{LbError, kernel};

/// Where shoal's classic filter sits in the clsact qdisc: a priority and handle of its
/// own, so it is found again (and replaced) and never taken for another tool's.
const PRIORITY: u16 = 0x5e;
const HANDLE: TcHandle = TcHandle::new(0, 0x5e);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    Tcx,
    Classic,
}

impl AttachMode {
    /// The mode `--lb-attach` asks for on a kernel that `has_tcx` (6.6+) or not.
    pub fn choose(flag: &str, has_tcx: bool) -> Result<AttachMode, LbError> {
        match flag {
            "auto" if has_tcx => Ok(AttachMode::Tcx),
            "auto" | "tc" => Ok(AttachMode::Classic),
            "tcx" if has_tcx => Ok(AttachMode::Tcx),
            "tcx" => Err(LbError::Unavailable(format!(
                "--lb-attach tcx: this kernel ({}) has no tcx links, which came in 6.6; use --lb-attach tc or auto",
                KernelVersion::current().map_or_else(|e| e.to_string(), |v| v.to_string())
            ))),
            other => Err(LbError::Unavailable(format!(
                "unknown --lb-attach {other:?}: use auto, tcx or tc"
            ))),
        }
    }

    /// Whether this kernel has tcx links.
    pub fn kernel_has_tcx() -> bool {
        KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
    }

    /// As `debug lb` shows it.
    pub fn describe(self) -> &'static str {
        match self {
            AttachMode::Tcx => "tcx (pinned tcx links)",
            AttachMode::Classic => "tc (clsact qdisc, direct-action cls_bpf filters)",
        }
    }
}

/// Puts `prog` on `ifname` in `direction` as a classic filter: into shoal's filter if an
/// earlier agent left one (its program swapped for this one), else into a new one.
pub fn attach_classic(
    prog: &mut SchedClassifier,
    prog_name: &str,
    ifname: &str,
    direction: TcAttachType,
) -> Result<(), LbError> {
    // Already there (an earlier agent's, or the interface's own): nothing to add.
    let _ = aya::programs::tc::qdisc_add_clsact(ifname);
    let existing = SchedClassifierLink::attached(ifname, direction, PRIORITY, HANDLE, None)
        .map_err(|e| LbError::NoInterface(format!("{ifname} ({e})")))?;
    let id = match prog.attach_to_link(existing) {
        Ok(id) => id,
        Err(_) => prog
            .attach_with_options(
                ifname,
                direction,
                TcAttachOptions::Netlink(NlOptions {
                    priority: PRIORITY,
                    handle: HANDLE,
                    classid: None,
                }),
            )
            .map_err(kernel(format!(
                "attaching {prog_name} to {ifname} as a classic TC filter"
            )))?,
    };
    // The filter must outlive this agent: dropping the link would take it out.
    let link = prog.take_link(id).map_err(kernel("taking the filter"))?;
    std::mem::forget(link);
    Ok(())
}

/// Takes shoal's classic filter off `ifname` in `direction`, if there is one.
pub fn detach_classic(ifname: &str, direction: TcAttachType) {
    // Dropping a link made for the filter detaches it; there may be none, which is fine.
    if let Ok(link) = SchedClassifierLink::attached(ifname, direction, PRIORITY, HANDLE, None) {
        drop(link);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_tcx_only_where_the_kernel_has_it_and_tcx_is_refused_without() {
        assert_eq!(AttachMode::choose("auto", true).unwrap(), AttachMode::Tcx);
        assert_eq!(
            AttachMode::choose("auto", false).unwrap(),
            AttachMode::Classic
        );
        assert_eq!(AttachMode::choose("tc", true).unwrap(), AttachMode::Classic);
        assert_eq!(AttachMode::choose("tcx", true).unwrap(), AttachMode::Tcx);
        let e = AttachMode::choose("tcx", false).unwrap_err().to_string();
        assert!(e.contains("6.6") && e.contains("--lb-attach tc"), "{e}");
        assert!(AttachMode::choose("xdp", true).is_err());
    }
}
