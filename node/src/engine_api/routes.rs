//! The routing table and its handlers. Each handler turns a request into Control calls
//! (the same ones the `shoal` CLI makes) and the answers into Engine API JSON.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};
use shoal_proto as pb;
use shoal_proto::control_server::Control;
use tonic::Request;

use shoal_docker::engine::filters::Filters;
use shoal_docker::engine::request::{self as spec, parse};
use shoal_docker::render::{engine as render, network, node, service};

use super::{ApiError, ApiResult, ClientVersion, logs, passthrough};
use crate::Daemon;
use crate::control::ControlService;

pub struct Api {
    pub ctl: ControlService,
    pub daemon: Arc<Daemon>,
    /// This API's own socket, never to be taken for dockerd's.
    pub(super) own_socket: PathBuf,
}

type Shared = State<Arc<Api>>;
pub(super) type Params = Query<HashMap<String, String>>;

pub fn router(daemon: Arc<Daemon>) -> Router {
    let api = Arc::new(Api {
        ctl: ControlService::local(daemon.clone()),
        own_socket: daemon.engine_socket(),
        daemon,
    });
    Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(|| async { axum::Json(render::version()) }))
        .route("/info", get(info))
        .route("/swarm", get(swarm_inspect))
        .route("/swarm/init", post(swarm_init))
        .route("/swarm/join", post(swarm_join))
        .route("/swarm/leave", post(swarm_leave))
        .route("/swarm/update", post(swarm_update))
        .route("/swarm/unlockkey", get(swarm_unlock_key))
        .route("/swarm/unlock", post(swarm_unlock))
        .route("/nodes", get(node_list))
        .route("/nodes/{id}", get(node_inspect).delete(node_remove))
        .route("/nodes/{id}/update", post(node_update))
        .route("/services", get(service_list))
        .route("/services/create", post(service_create))
        .route(
            "/services/{id}",
            get(service_inspect).delete(service_remove),
        )
        .route("/services/{id}/update", post(service_update))
        .route("/services/{id}/logs", get(logs::service_logs))
        .route("/tasks", get(task_list))
        .route("/tasks/{id}", get(task_inspect))
        .route("/networks", get(network_list))
        .route("/networks/create", post(network_create))
        .route("/networks/{id}", get(network_inspect))
        .route("/networks/{id}", delete(network_remove))
        .route("/networks/{id}/connect", post(network_connect))
        .route("/networks/{id}/disconnect", post(network_disconnect))
        .route("/events", get(super::events::events))
        .route("/distribution/{*name}", get(distribution))
        .merge(super::secrets::routes())
        .fallback(|| async { ApiError::not_found("page not found") })
        .with_state(api)
}

fn ok<T>(resp: tonic::Response<T>) -> T {
    resp.into_inner()
}

async fn ping(State(api): Shared) -> Response {
    let info = api.daemon.info().await;
    let swarm = match (info.local_node_state.as_str(), info.control_available) {
        ("active", true) => "active/manager",
        ("active", false) => "active/worker",
        _ => "inactive",
    };
    (
        [
            ("content-type", "text/plain; charset=utf-8"),
            ("cache-control", "no-cache, no-store, must-revalidate"),
            ("pragma", "no-cache"),
            ("swarm", swarm),
        ],
        "OK",
    )
        .into_response()
}

/// The node's info with the counts of nodes and managers, and the cluster object, which
/// /info and /swarm carry for managers.
async fn full_info(api: &Api) -> (pb::InfoResponse, Option<pb::Cluster>) {
    let mut info = api.daemon.info().await;
    if !info.control_available {
        return (info, None);
    }
    if let Ok(nodes) = api.ctl.list_nodes(Request::new(pb::Empty {})).await {
        let nodes = nodes.into_inner().nodes;
        info.nodes = nodes.len() as u32;
        info.managers = nodes.iter().filter(|n| n.manager_status.is_some()).count() as u32;
    }
    let cluster = match api.daemon.manager().await {
        Ok(m) => m.cluster().ok(),
        Err(_) => None,
    };
    (info, cluster)
}

/// The refusal every manager-only call gets on a worker (or outside a swarm), as the
/// Control service words it.
async fn manager_only(api: &Api) -> ApiResult<()> {
    api.daemon.manager().await?;
    Ok(())
}

async fn info(State(api): Shared) -> axum::Json<Value> {
    let (info, cluster) = full_info(&api).await;
    let root = api.daemon.args.data_dir.display().to_string();
    let mut doc = render::system_info(&info, cluster.as_ref(), &root);
    // The engine's part (containers, images, storage) is the node's dockerd's, if any.
    if let Some(engine) = passthrough::engine_json(&api.own_socket, "/info").await {
        for key in [
            "Containers",
            "ContainersRunning",
            "ContainersPaused",
            "ContainersStopped",
            "Images",
            "Driver",
            "DriverStatus",
        ] {
            if let Some(v) = engine.get(key) {
                doc[key] = v.clone();
            }
        }
    }
    axum::Json(doc)
}

async fn swarm_inspect(State(api): Shared) -> ApiResult<axum::Json<Value>> {
    manager_only(&api).await?;
    let (info, cluster) = full_info(&api).await;
    let token = |role: pb::NodeRole| {
        api.ctl.join_token(Request::new(pb::JoinTokenRequest {
            role: role as i32,
            rotate: false,
        }))
    };
    let worker = ok(token(pb::NodeRole::Worker).await?).token;
    let manager = ok(token(pb::NodeRole::Manager).await?).token;
    let mut doc = render::cluster(&info, cluster.as_ref());
    doc["JoinTokens"] = json!({"Worker": worker, "Manager": manager});
    Ok(axum::Json(doc))
}

async fn swarm_init(State(api): Shared, body: Bytes) -> ApiResult<axum::Json<Value>> {
    let req = parse::<spec::SwarmInit>(&body)?.into_proto()?;
    let resp = ok(api.ctl.swarm_init(Request::new(req)).await?);
    Ok(axum::Json(json!(resp.node_id)))
}

async fn swarm_join(State(api): Shared, body: Bytes) -> ApiResult<StatusCode> {
    let req = parse::<spec::SwarmJoin>(&body)?.into_proto()?;
    api.ctl.swarm_join(Request::new(req)).await?;
    Ok(StatusCode::OK)
}

/// A boolean query parameter as dockerd reads one.
pub(super) fn flag(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key)
        .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True"))
}

async fn swarm_leave(State(api): Shared, Query(q): Params) -> ApiResult<StatusCode> {
    let force = flag(&q, "force");
    api.ctl
        .swarm_leave(Request::new(pb::SwarmLeaveRequest { force }))
        .await?;
    Ok(StatusCode::OK)
}

/// Token and unlock key rotation, autolock and the heartbeat; any other setting that
/// differs from what /swarm shows is refused, naming it.
async fn swarm_update(State(api): Shared, Query(q): Params, body: Bytes) -> ApiResult<StatusCode> {
    let sent: Value = parse(&body)?;
    manager_only(&api).await?;
    let (settings, signing_key) = spec::swarm_settings(&sent, "")?;
    let positive = |n: u64| (n > 0).then_some(n);
    api.ctl
        .update_swarm(Request::new(pb::SwarmUpdateRequest {
            autolock: Some(settings.autolock),
            heartbeat_period_ms: positive(settings.heartbeat_ms),
            task_history_limit: Some(settings.task_history),
            cert_expiry_secs: positive(settings.cert_expiry_secs),
            rotate_ca: false,
            ca_cert_pem: settings.signing_ca_cert,
            ca_key_pem: signing_key,
            snapshot_interval: positive(settings.snapshot_interval),
            keep_old_snapshots: Some(settings.keep_old_snapshots),
            force_rotate: Some(settings.force_rotate),
        }))
        .await?;
    if flag(&q, "rotateManagerUnlockKey") {
        api.ctl
            .unlock_key(Request::new(pb::UnlockKeyRequest { rotate: true }))
            .await?;
    }
    for (key, role) in [
        ("rotateWorkerToken", pb::NodeRole::Worker),
        ("rotateManagerToken", pb::NodeRole::Manager),
    ] {
        if flag(&q, key) {
            api.ctl
                .join_token(Request::new(pb::JoinTokenRequest {
                    role: role as i32,
                    rotate: true,
                }))
                .await?;
        }
    }
    Ok(StatusCode::OK)
}

async fn swarm_unlock_key(State(api): Shared) -> ApiResult<axum::Json<Value>> {
    let key = ok(api
        .ctl
        .unlock_key(Request::new(pb::UnlockKeyRequest { rotate: false }))
        .await?);
    Ok(axum::Json(json!({"UnlockKey": key.unlock_key})))
}

async fn swarm_unlock(State(api): Shared, body: Bytes) -> ApiResult<StatusCode> {
    let sent: Value = parse(&body)?;
    let key = spec::field(&sent, "UnlockKey")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    api.ctl
        .swarm_unlock(Request::new(pb::SwarmUnlockRequest { unlock_key: key }))
        .await?;
    Ok(StatusCode::OK)
}

async fn node_list(State(api): Shared, Query(q): Params) -> ApiResult<axum::Json<Value>> {
    let f = Filters::parse(
        q.get("filters").map(String::as_str),
        &["id", "label", "membership", "name", "node.label", "role"],
    )?;
    let nodes = ok(api.ctl.list_nodes(Request::new(pb::Empty {})).await?).nodes;
    let list: Vec<Value> = nodes
        .iter()
        .filter(|n| {
            let hostname = n
                .description
                .as_ref()
                .map(|d| d.hostname.as_str())
                .unwrap_or("");
            let spec = n.spec.clone().unwrap_or_default();
            let labels = spec.annotations.map(|a| a.labels).unwrap_or_default();
            let role = if spec.desired_role == pb::NodeRole::Manager as i32 {
                "manager"
            } else {
                "worker"
            };
            f.any("id", |v| n.id.starts_with(v))
                && f.any("name", |v| hostname == v)
                && f.any("role", |v| v == role)
                && f.any("membership", |v| v == "accepted")
                && f.labels("node.label", &labels)
        })
        .map(node::engine_json)
        .collect();
    Ok(axum::Json(json!(list)))
}

async fn get_node(api: &Api, id: String) -> ApiResult<pb::Node> {
    Ok(ok(api
        .ctl
        .get_node(Request::new(pb::GetNodeRequest { id_or_name: id }))
        .await?))
}

async fn node_inspect(State(api): Shared, Path(id): Path<String>) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(node::engine_json(&get_node(&api, id).await?)))
}

async fn node_remove(
    State(api): Shared,
    Path(id): Path<String>,
    Query(q): Params,
) -> ApiResult<StatusCode> {
    api.ctl
        .remove_node(Request::new(pb::RemoveNodeRequest {
            id_or_name: id,
            force: flag(&q, "force"),
        }))
        .await?;
    Ok(StatusCode::OK)
}

/// The Engine API sends the whole NodeSpec; shoal's call takes the changes.
async fn node_update(
    State(api): Shared,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let want = parse::<spec::NodeSpec>(&body)?;
    let have = get_node(&api, id.clone()).await?;
    let current = have
        .spec
        .unwrap_or_default()
        .annotations
        .map(|a| a.labels)
        .unwrap_or_default();
    let role = match want.role.as_deref() {
        None | Some("") => None,
        Some("worker") => Some(pb::NodeRole::Worker as i32),
        Some("manager") => Some(pb::NodeRole::Manager as i32),
        Some(r) => {
            return Err(ApiError::bad_request(format!(
                "Role: invalid value {r:?}: use worker or manager"
            )));
        }
    };
    let availability = match want.availability.as_deref() {
        None | Some("") => None,
        Some("active") => Some(pb::NodeAvailability::Active as i32),
        Some("pause") => Some(pb::NodeAvailability::Pause as i32),
        Some("drain") => Some(pb::NodeAvailability::Drain as i32),
        Some(a) => {
            return Err(ApiError::bad_request(format!(
                "Availability: invalid value {a:?}: use active, pause or drain"
            )));
        }
    };
    if want.name.as_deref().is_some_and(|n| !n.is_empty()) {
        return Err(ApiError::bad_request(
            "Name: shoal names nodes by their hostname",
        ));
    }
    let label_rm = current
        .keys()
        .filter(|k| !want.labels.contains_key(*k))
        .cloned()
        .collect();
    let label_add = want
        .labels
        .into_iter()
        .filter(|(k, v)| current.get(k) != Some(v))
        .collect();
    api.ctl
        .update_node(Request::new(pb::UpdateNodeRequest {
            id_or_name: have.id,
            availability,
            label_add,
            label_rm,
            role,
        }))
        .await?;
    Ok(StatusCode::OK)
}

fn service_mode(s: &pb::Service) -> &'static str {
    match s.spec.as_ref().and_then(|s| s.mode.as_ref()) {
        Some(pb::service_spec::Mode::Global(_)) => "global",
        _ => "replicated",
    }
}

async fn service_list(State(api): Shared, Query(q): Params) -> ApiResult<axum::Json<Value>> {
    let f = Filters::parse(
        q.get("filters").map(String::as_str),
        &["id", "label", "mode", "name"],
    )?;
    let listed = ok(api.ctl.list_services(Request::new(pb::Empty {})).await?);
    let status = flag(&q, "status");
    let list: Vec<Value> = listed
        .services
        .iter()
        .filter(|s| {
            let ann = s
                .spec
                .as_ref()
                .and_then(|s| s.annotations.clone())
                .unwrap_or_default();
            f.any("id", |v| s.id.starts_with(v))
                && f.any("name", |v| ann.name.starts_with(v))
                && f.any("mode", |v| v == service_mode(s))
                && f.labels("label", &ann.labels)
        })
        .map(|s| {
            let mut doc = service::engine_json(s);
            if status {
                doc["ServiceStatus"] = json!({
                    "RunningTasks": listed.running.get(&s.id).copied().unwrap_or_default(),
                    "DesiredTasks": listed.desired.get(&s.id).copied().unwrap_or_default(),
                    "CompletedTasks": listed.completed.get(&s.id).copied().unwrap_or_default(),
                });
            }
            doc
        })
        .collect();
    Ok(axum::Json(json!(list)))
}

async fn get_service(api: &Api, id: String) -> ApiResult<pb::Service> {
    Ok(ok(api
        .ctl
        .get_service(Request::new(pb::ServiceRef { id_or_name: id }))
        .await?))
}

async fn service_inspect(
    State(api): Shared,
    Path(id): Path<String>,
    Query(q): Params,
) -> ApiResult<axum::Json<Value>> {
    let mut svc = get_service(&api, id).await?;
    if flag(&q, "insertDefaults") {
        svc.spec = svc.spec.map(service::with_defaults);
    }
    Ok(axum::Json(service::engine_json(&svc)))
}

async fn service_create(
    State(api): Shared,
    Extension(ClientVersion(v)): Extension<ClientVersion>,
    body: Bytes,
) -> ApiResult<Response> {
    let spec = parse::<spec::ServiceSpec>(&body)?
        .for_version(v)
        .into_proto()?;
    let created = ok(api.ctl.create_service(Request::new(spec)).await?);
    Ok((
        StatusCode::CREATED,
        // Warnings is omitempty in dockerd's answer: none, so absent.
        axum::Json(json!({"ID": created.id})),
    )
        .into_response())
}

async fn service_update(
    State(api): Shared,
    Extension(ClientVersion(v)): Extension<ClientVersion>,
    Path(id): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> ApiResult<axum::Json<Value>> {
    let version = q
        .get("version")
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid or missing version: pass ?version= with the service's Version.Index",
            )
        })?;
    let rollback = match q.get("rollback").map(String::as_str) {
        None | Some("") => false,
        Some("previous") => true,
        Some(r) => {
            return Err(ApiError::bad_request(format!(
                "rollback: invalid value {r:?}: use previous"
            )));
        }
    };
    let spec = parse::<spec::ServiceSpec>(&body)?
        .for_version(v)
        .into_proto()?;
    api.ctl
        .update_service(Request::new(pb::UpdateServiceRequest {
            id_or_name: id,
            version,
            spec: Some(spec),
            rollback,
        }))
        .await?;
    // Warnings is omitempty in dockerd's answer: none, so absent.
    Ok(axum::Json(json!({})))
}

async fn service_remove(State(api): Shared, Path(id): Path<String>) -> ApiResult<StatusCode> {
    api.ctl
        .remove_service(Request::new(pb::ServiceRef { id_or_name: id }))
        .await?;
    Ok(StatusCode::OK)
}

async fn task_list(State(api): Shared, Query(q): Params) -> ApiResult<axum::Json<Value>> {
    let f = Filters::parse(
        q.get("filters").map(String::as_str),
        &[
            "desired-state",
            "id",
            "label",
            "name",
            "node",
            "service",
            "_up-to-date",
        ],
    )?;
    let services = ok(api.ctl.list_services(Request::new(pb::Empty {})).await?).services;
    // A task's labels, for filtering, are its service's (as swarmkit matches them).
    let no_labels = HashMap::new();
    let current: HashMap<&str, (&str, u64, &HashMap<String, String>)> = services
        .iter()
        .map(|s| {
            let ann = s.spec.as_ref().and_then(|s| s.annotations.as_ref());
            let name = ann.map(|a| a.name.as_str()).unwrap_or("");
            let labels = ann.map(|a| &a.labels).unwrap_or(&no_labels);
            (s.id.as_str(), (name, s.spec_version, labels))
        })
        .collect();
    let listed = ok(api
        .ctl
        .list_tasks(Request::new(pb::ListTasksRequest::default()))
        .await?);
    let up_to_date = f.values("_up-to-date").is_some();
    let list: Vec<Value> = listed
        .tasks
        .iter()
        .filter(|t| {
            let (service_name, version, labels) = current
                .get(t.service_id.as_str())
                .copied()
                .unwrap_or(("", 0, &no_labels));
            let hostname = listed
                .node_names
                .get(&t.node_id)
                .map(String::as_str)
                .unwrap_or("");
            let name = format!("{service_name}.{}", t.slot);
            let desired = t.desired_state();
            f.any("id", |v| t.id.starts_with(v))
                && f.any("service", |v| {
                    t.service_id.starts_with(v) || service_name == v
                })
                && f.any("node", |v| t.node_id.starts_with(v) || hostname == v)
                && f.any("name", |v| name == v || name.starts_with(v))
                && f.any("desired-state", |v| match v {
                    "running" => desired == pb::TaskState::Running,
                    "shutdown" => desired >= pb::TaskState::Shutdown,
                    "accepted" => desired == pb::TaskState::Accepted,
                    _ => false,
                })
                && f.labels("label", labels)
                && (!up_to_date || t.spec_version == version)
        })
        .map(render::task)
        .collect();
    Ok(axum::Json(json!(list)))
}

async fn task_inspect(State(api): Shared, Path(id): Path<String>) -> ApiResult<axum::Json<Value>> {
    let listed = ok(api
        .ctl
        .list_tasks(Request::new(pb::ListTasksRequest::default()))
        .await?);
    let found: Vec<&pb::Task> = listed
        .tasks
        .iter()
        .filter(|t| t.id == id || t.id.starts_with(&id))
        .collect();
    match found.as_slice() {
        [t] => Ok(axum::Json(render::task(t))),
        [] => Err(ApiError::not_found(format!("task {id} not found"))),
        _ => Err(ApiError::bad_request(format!(
            "task {id} is ambiguous ({} matches)",
            found.len()
        ))),
    }
}

async fn network_list(
    State(api): Shared,
    Query(q): Params,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<Value>> {
    let f = Filters::parse(
        q.get("filters").map(String::as_str),
        &["dangling", "driver", "id", "label", "name", "scope", "type"],
    )?;
    let nets = ok(api.ctl.list_networks(Request::new(pb::Empty {})).await?).networks;
    let mut list: Vec<Value> = nets
        .iter()
        .filter(|n| {
            let name = n.name();
            let labels = n
                .spec
                .as_ref()
                .and_then(|s| s.annotations.clone())
                .map(|a| a.labels)
                .unwrap_or_default();
            f.any("id", |v| n.id.starts_with(v))
                && f.any("name", |v| name.contains(v))
                && f.any("driver", |v| v == "overlay")
                && f.any("scope", |v| v == "swarm")
                && f.any("type", |v| v == "custom")
                && f.labels("label", &labels)
        })
        .map(network::engine_json)
        .collect();
    // The node's local networks (bridge, host, none, ...) are its dockerd's, as on a
    // Swarm node, where one list holds both.
    let path = raw.map_or("/networks".to_string(), |q| format!("/networks?{q}"));
    if let Some(Value::Array(local)) = passthrough::engine_json(&api.own_socket, &path).await {
        list.extend(local.into_iter().filter(|n| n["Scope"] == "local"));
    }
    Ok(axum::Json(json!(list)))
}

/// Overlay networks are the swarm's; any other driver makes a local network of the
/// node's dockerd, as `docker network create` does on a Swarm node.
async fn network_create(State(api): Shared, body: Bytes) -> ApiResult<Response> {
    let create = parse::<spec::NetworkCreate>(&body)?;
    if create.driver != "overlay" {
        return Ok(
            passthrough::send(&api.own_socket, Method::POST, "/networks/create", body).await,
        );
    }
    let created = ok(api
        .ctl
        .create_network(Request::new(create.into_proto()?))
        .await?);
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"Id": created.id, "Warning": ""})),
    )
        .into_response())
}

/// A network shoal does not know may be one of the node's dockerd's.
async fn or_local(api: &Api, method: Method, path: &str, e: ApiError) -> ApiResult<Response> {
    if e.status != StatusCode::NOT_FOUND {
        return Err(e);
    }
    let local = passthrough::send(&api.own_socket, method, path, Bytes::new()).await;
    match local.status() {
        StatusCode::NOT_FOUND | StatusCode::SERVICE_UNAVAILABLE => Err(e),
        _ => Ok(local),
    }
}

async fn network_inspect(State(api): Shared, Path(id): Path<String>) -> ApiResult<Response> {
    match api
        .ctl
        .get_network(Request::new(pb::NetworkRef {
            id_or_name: id.clone(),
        }))
        .await
    {
        Ok(n) => Ok(axum::Json(network::engine_json(&ok(n))).into_response()),
        Err(e) => or_local(&api, Method::GET, &format!("/networks/{id}"), e.into()).await,
    }
}

async fn network_remove(State(api): Shared, Path(id): Path<String>) -> ApiResult<Response> {
    match api
        .ctl
        .remove_network(Request::new(pb::NetworkRef {
            id_or_name: id.clone(),
        }))
        .await
    {
        Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => or_local(&api, Method::DELETE, &format!("/networks/{id}"), e.into()).await,
    }
}

/// shoal's answer to connecting or disconnecting, or, when it refused for not knowing
/// the network (the managers) or not seeing the container (this node's runtime), the
/// node's dockerd's: a local network, or a container only dockerd has, answered as on a
/// Swarm node.
async fn shoal_or_dockerd<T>(
    api: &Api,
    asked: Result<tonic::Response<T>, tonic::Status>,
    path: &str,
    body: Bytes,
) -> ApiResult<Response> {
    match asked {
        Ok(_) => Ok(StatusCode::OK.into_response()),
        Err(s)
            if s.metadata()
                .contains_key(shoal_manager::error::UNKNOWN_NETWORK)
                || s.metadata().contains_key(crate::connect::UNKNOWN_CONTAINER) =>
        {
            Ok(passthrough::send(&api.own_socket, Method::POST, path, body).await)
        }
        Err(s) => Err(s.into()),
    }
}

/// Connects a container on this node: to an attachable overlay as the swarm's attachment
/// (`shoal network connect`), to a network the managers do not know through the node's
/// dockerd (its local networks), as one socket does both on a Swarm node.
async fn network_connect(
    State(api): Shared,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let path = format!("/networks/{id}/connect");
    let connect = parse::<spec::NetworkConnect>(&body)?;
    if let Err(refused) = connect.endpoint_config.swarm_refusal() {
        // Settings only a local network can give: dockerd's, unless the swarm owns it.
        let swarm_owned = api
            .ctl
            .get_network(Request::new(pb::NetworkRef { id_or_name: id }))
            .await
            .is_ok();
        if swarm_owned {
            return Err(refused.into());
        }
        return Ok(passthrough::send(&api.own_socket, Method::POST, &path, body).await);
    }
    let asked = api
        .ctl
        .connect_network(Request::new(pb::NetworkConnectRequest {
            node_id: String::new(),
            network: id,
            container: connect.container,
            aliases: connect.endpoint_config.aliases,
        }))
        .await;
    shoal_or_dockerd(&api, asked, &path, body).await
}

async fn network_disconnect(
    State(api): Shared,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let path = format!("/networks/{id}/disconnect");
    let disconnect = parse::<spec::NetworkConnect>(&body)?;
    let asked = api
        .ctl
        .disconnect_network(Request::new(pb::NetworkConnectRequest {
            node_id: String::new(),
            network: id,
            container: disconnect.container,
            aliases: vec![],
        }))
        .await;
    shoal_or_dockerd(&api, asked, &path, body).await
}

/// Image digests come from a registry; shoal asks none (each node resolves the image
/// itself), which the docker CLI reports as a warning and goes on.
async fn distribution(Path(name): Path<String>) -> ApiError {
    let image = name.strip_suffix("/json").unwrap_or(&name);
    ApiError::not_found(format!(
        "shoal does not query registries: each node resolves image {image} from its own store"
    ))
}
