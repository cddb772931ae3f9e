//! `swarm ca --rotate` waits, as docker's does, until every node holds a certificate from
//! the new root and trusts only it, showing how many have got there.

use std::time::Duration;

use shoal_node::client::daemon_error;
use shoal_proto::Empty;
use shoal_proto::control_client::ControlClient;
use tonic::transport::Channel;

const POLL: Duration = Duration::from_millis(500);

pub async fn wait(client: &mut ControlClient<Channel>, quiet: bool) -> anyhow::Result<()> {
    let mut shown = String::new();
    loop {
        let info = client
            .info(Empty {})
            .await
            .map_err(daemon_error)?
            .into_inner();
        let nodes = client
            .list_nodes(Empty {})
            .await
            .map_err(daemon_error)?
            .into_inner()
            .nodes;
        let trusting = nodes
            .iter()
            .filter(|n| {
                n.description
                    .as_ref()
                    .and_then(|d| d.tls_info.as_ref())
                    .is_some_and(|t| t.trust_root_pem == info.ca_cert_pem)
            })
            .count();
        let line = if info.ca_rotation_in_progress {
            "rotating TLS certificates: waiting for every node to hold one from the new root CA"
                .to_string()
        } else {
            format!(
                "rotated CA certificates: {trusting}/{} nodes trust only the new root",
                nodes.len()
            )
        };
        if !quiet && line != shown {
            eprintln!("{line}");
            shown = line;
        }
        if !info.ca_rotation_in_progress && trusting == nodes.len() {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}
