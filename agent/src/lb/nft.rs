//! The nftables engine: kernel NAT and conntrack. In each task's namespace a nat/output
//! chain sends connections to a VIP to one backend (numgen over the live ones); in the
//! node's namespace nat/prerouting and nat/output send connections to a published port on
//! any local address (localhost too, from the node itself) to a task over the ingress
//! network, masqueraded behind the node's ingress address so replies come back through
//! this node. Conntrack keeps each
//! connection on its backend while the backend set changes.

use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::plan::{MeshFrontend, VipFrontend};
use super::{Engine, HostPort, LbError, Leg, NODE_SITE, TaskLeg};
use crate::nft;

const TABLE: &str = "shoal_lb";
/// Host-mode ports: a table of their own, so either engine can use it.
const HOST_TABLE: &str = "shoal_host";
const HOST_SITE: &str = "host";
/// A ruleset unchanged for this long is written again anyway (repairs drift).
const REASSERT_EVERY: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct NftEngine {
    applied: Mutex<HashMap<String, (String, Instant)>>,
}

/// `dnat to` one of `targets`, spread by a random number per new connection.
fn spread(targets: &[String]) -> String {
    match targets {
        [one] => one.clone(),
        many => {
            let map: Vec<String> = many
                .iter()
                .enumerate()
                .map(|(i, t)| format!("{i} : {t}"))
                .collect();
            format!(
                "numgen random mod {} map {{ {} }}",
                many.len(),
                map.join(", ")
            )
        }
    }
}

fn task_rules(vips: &[VipFrontend]) -> String {
    let mut body =
        String::from("  chain output {\n    type nat hook output priority -100; policy accept;\n");
    for f in vips.iter().filter(|f| !f.backends.is_empty()) {
        let targets: Vec<String> = f.backends.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            body,
            "    ip daddr {} dnat to {} comment \"{}\"",
            f.vip,
            spread(&targets),
            f.service_name
        );
    }
    body.push_str("  }\n");
    body
}

fn node_rules(mesh: &[MeshFrontend], leg: &str) -> String {
    let mut body = String::from("  chain mesh {\n");
    for f in mesh.iter().filter(|f| !f.backends.is_empty()) {
        // One target is written ip:port; a map's values are concatenations.
        let sep = if f.backends.len() == 1 { ":" } else { " . " };
        let targets: Vec<String> = f
            .backends
            .iter()
            .map(|(ip, port)| format!("{ip}{sep}{port}"))
            .collect();
        let _ = writeln!(
            body,
            "    {} dport {} dnat ip to {} comment \"{}\"",
            f.protocol.name(),
            f.port,
            spread(&targets),
            f.service_name
        );
    }
    let _ = write!(
        body,
        "  }}\n\
         \x20 chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    fib daddr type local ip daddr != 127.0.0.0/8 jump mesh\n  }}\n\
         \x20 chain output {{\n    type nat hook output priority -100; policy accept;\n    fib daddr type local jump mesh\n  }}\n\
         \x20 chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"{leg}\" ct status dnat masquerade\n  }}\n"
    );
    body
}

/// nat chains sending connections to any local address's `published` port to a task.
fn host_rules(ports: &[HostPort]) -> String {
    let mut body = String::from("  chain host {\n");
    for p in ports {
        let _ = writeln!(
            body,
            "    {} dport {} dnat ip to {}:{}",
            p.protocol.name(),
            p.published,
            p.addr,
            p.target
        );
    }
    body.push_str(
        "  }\n\
         \x20 chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n    fib daddr type local ip daddr != 127.0.0.0/8 jump host\n  }\n\
         \x20 chain output {\n    type nat hook output priority -100; policy accept;\n    fib daddr type local ip daddr != 127.0.0.0/8 jump host\n  }\n",
    );
    body
}

impl NftEngine {
    /// Writes `script` in `netns` unless the same was written there recently.
    /// Whether `script` was written at `key` recently.
    fn fresh(&self, key: &str, script: &str) -> bool {
        self.applied
            .lock()
            .expect("not poisoned")
            .get(key)
            .is_some_and(|(s, at)| *s == script && at.elapsed() < REASSERT_EVERY)
    }

    fn apply(&self, key: &str, netns: Option<&Path>, script: String) -> Result<(), LbError> {
        if self.fresh(key, &script) {
            return Ok(());
        }
        nft::apply(netns, &script).map_err(LbError::Nft)?;
        self.applied
            .lock()
            .expect("not poisoned")
            .insert(key.to_string(), (script, Instant::now()));
        Ok(())
    }
}

impl Engine for NftEngine {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn program_task(
        &self,
        task_id: &str,
        netns: &Path,
        _legs: &[TaskLeg],
        vips: &[VipFrontend],
    ) -> Result<(), LbError> {
        let script = if vips.is_empty() {
            nft::remove_table("ip", TABLE)
        } else {
            nft::replace_table("ip", TABLE, &task_rules(vips))
        };
        self.apply(task_id, Some(netns), script)
    }

    fn program_node(&self, mesh: &[MeshFrontend], leg: &Leg) -> Result<(), LbError> {
        let script = if mesh.is_empty() {
            nft::remove_table("ip", TABLE)
        } else {
            nft::replace_table("ip", TABLE, &node_rules(mesh, &leg.ifname))
        };
        if !self.fresh(NODE_SITE, &script) {
            // The node's own clients may ask localhost: their 127/8 source leaves through
            // the leg (masqueraded there) and the replies come back to it, which the kernel
            // allows on a device with route_localnet only. The leg leads only to the
            // ingress sandbox. Asserted with the rules, as often.
            let knob = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", leg.ifname);
            std::fs::write(&knob, "1").map_err(super::kernel(format!(
                "setting {knob} for the mesh's local clients"
            )))?;
        }
        self.apply(NODE_SITE, None, script)
    }

    fn program_host_ports(&self, ports: &[HostPort]) -> Result<(), LbError> {
        let script = if ports.is_empty() {
            nft::remove_table("ip", HOST_TABLE)
        } else {
            nft::replace_table("ip", HOST_TABLE, &host_rules(ports))
        };
        self.apply(HOST_SITE, None, script)
    }

    fn forget(&self, task_id: &str) {
        self.applied.lock().expect("not poisoned").remove(task_id);
    }

    fn clear_node(&self) -> Result<(), LbError> {
        self.forget(NODE_SITE);
        self.forget(HOST_SITE);
        nft::apply(None, &nft::remove_table("ip", TABLE)).map_err(LbError::Nft)?;
        nft::apply(None, &nft::remove_table("ip", HOST_TABLE)).map_err(LbError::Nft)
    }

    fn has_state(&self) -> bool {
        std::process::Command::new("nft")
            .args(["list", "table", "ip", TABLE])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::Protocol;
    use std::net::Ipv4Addr;

    #[test]
    fn rules_spread_over_backends_and_skip_empty_frontends() {
        let vips = [
            VipFrontend {
                network_id: "n".into(),
                vip: Ipv4Addr::new(10, 0, 1, 2),
                service_name: "web".into(),
                backends: vec![Ipv4Addr::new(10, 0, 1, 5), Ipv4Addr::new(10, 0, 1, 6)],
            },
            VipFrontend {
                network_id: "n".into(),
                vip: Ipv4Addr::new(10, 0, 1, 3),
                service_name: "api".into(),
                backends: vec![],
            },
        ];
        let rules = task_rules(&vips);
        assert!(rules.contains(
            "ip daddr 10.0.1.2 dnat to numgen random mod 2 map { 0 : 10.0.1.5, 1 : 10.0.1.6 }"
        ));
        assert!(!rules.contains("10.0.1.3"));
        nft::check(&nft::replace_table("ip", TABLE, &rules)).expect("nft takes the VIP rules");
        let mesh = [MeshFrontend {
            protocol: Protocol::Udp,
            port: 5353,
            service_name: "dns".into(),
            backends: vec![(Ipv4Addr::new(10, 0, 0, 7), 53)],
        }];
        let rules = node_rules(&mesh, "shoal_ingress");
        assert!(rules.contains("udp dport 5353 dnat ip to 10.0.0.7:53"));
        assert!(rules.contains("oifname \"shoal_ingress\" ct status dnat masquerade"));
        nft::check(&nft::replace_table("ip", TABLE, &rules)).expect("nft takes one backend");
        let mut two = mesh.to_vec();
        two[0].backends.push((Ipv4Addr::new(10, 0, 0, 8), 53));
        let rules = node_rules(&two, "shoal_ingress");
        assert!(rules.contains("map { 0 : 10.0.0.7 . 53, 1 : 10.0.0.8 . 53 }"));
        nft::check(&nft::replace_table("ip", TABLE, &rules)).expect("nft takes a map");
    }
}
