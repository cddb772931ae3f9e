//! /secrets and /configs: the same Control calls `shoal secret` and `shoal config` make.
//! A secret's data is never answered; a config's is (base64), as dockerd does.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use shoal_proto as pb;
use shoal_proto::control_server::Control;
use tonic::Request;

use shoal_docker::engine::filters::Filters;
use shoal_docker::engine::request::parse;
use shoal_docker::engine::secrets::FileSpec;
use shoal_docker::render::secret::{config_json, secret_json};

use super::ApiResult;
use super::routes::{Api, Params};

type Shared = State<Arc<Api>>;

pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/secrets", get(secret_list))
        .route("/secrets/create", post(secret_create))
        .route("/secrets/{id}", get(secret_inspect).delete(secret_remove))
        .route("/secrets/{id}/update", post(secret_update))
        .route("/configs", get(config_list))
        .route("/configs/create", post(config_create))
        .route("/configs/{id}", get(config_inspect).delete(config_remove))
        .route("/configs/{id}/update", post(config_update))
}

fn key(id: String) -> Request<pb::ObjectRef> {
    Request::new(pb::ObjectRef { id_or_name: id })
}

/// `?version=N`, which dockerd requires of an update.
fn version(q: &Params) -> ApiResult<u64> {
    q.get("version")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            super::ApiError::bad_request(
                "invalid version: give the object's Version.Index as ?version=N",
            )
        })
}

/// The list filtered as dockerd filters it: id and name prefixes, names exactly, labels.
fn filtered<T>(
    q: &Params,
    items: &[T],
    id_name_labels: impl Fn(&T) -> (&str, &str, std::collections::HashMap<String, String>),
    json: impl Fn(&T) -> Value,
) -> ApiResult<axum::Json<Value>> {
    let f = Filters::parse(
        q.get("filters").map(String::as_str),
        &["id", "label", "name", "names"],
    )?;
    let list: Vec<Value> = items
        .iter()
        .filter(|x| {
            let (id, name, labels) = id_name_labels(x);
            f.any("id", |v| id.starts_with(v))
                && f.any("name", |v| name.starts_with(v))
                && f.any("names", |v| name == v)
                && f.labels("label", &labels)
        })
        .map(json)
        .collect();
    Ok(axum::Json(json!(list)))
}

fn labels_of(a: Option<&pb::Annotations>) -> std::collections::HashMap<String, String> {
    a.map(|a| a.labels.clone()).unwrap_or_default()
}

fn created(id: &str) -> Response {
    (StatusCode::CREATED, axum::Json(json!({ "ID": id }))).into_response()
}

async fn secret_list(State(api): Shared, q: Params) -> ApiResult<axum::Json<Value>> {
    let list = api.ctl.list_secrets(Request::new(pb::Empty {})).await?;
    filtered(
        &q,
        &list.into_inner().secrets,
        |s| {
            let a = s.spec.as_ref().and_then(|x| x.annotations.as_ref());
            (s.id.as_str(), s.name(), labels_of(a))
        },
        secret_json,
    )
}

async fn secret_create(State(api): Shared, body: Bytes) -> ApiResult<Response> {
    let spec = parse::<FileSpec>(&body)?.into_secret()?;
    let s = api.ctl.create_secret(Request::new(spec)).await?;
    Ok(created(&s.into_inner().id))
}

async fn secret_inspect(State(api): Shared, Path(id): Path<String>) -> ApiResult<Response> {
    let s = api.ctl.get_secret(key(id)).await?;
    Ok(axum::Json(secret_json(&s.into_inner())).into_response())
}

async fn secret_remove(State(api): Shared, Path(id): Path<String>) -> ApiResult<StatusCode> {
    api.ctl.remove_secret(key(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn secret_update(
    State(api): Shared,
    Path(id): Path<String>,
    q: Params,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let request = pb::UpdateSecretRequest {
        id_or_name: id,
        version: version(&q)?,
        spec: Some(parse::<FileSpec>(&body)?.into_secret()?),
    };
    api.ctl.update_secret(Request::new(request)).await?;
    Ok(StatusCode::OK)
}

async fn config_list(State(api): Shared, q: Params) -> ApiResult<axum::Json<Value>> {
    let list = api.ctl.list_configs(Request::new(pb::Empty {})).await?;
    filtered(
        &q,
        &list.into_inner().configs,
        |c| {
            let a = c.spec.as_ref().and_then(|x| x.annotations.as_ref());
            (c.id.as_str(), c.name(), labels_of(a))
        },
        config_json,
    )
}

async fn config_create(State(api): Shared, body: Bytes) -> ApiResult<Response> {
    let spec = parse::<FileSpec>(&body)?.into_config()?;
    let c = api.ctl.create_config(Request::new(spec)).await?;
    Ok(created(&c.into_inner().id))
}

async fn config_inspect(State(api): Shared, Path(id): Path<String>) -> ApiResult<Response> {
    let c = api.ctl.get_config(key(id)).await?;
    Ok(axum::Json(config_json(&c.into_inner())).into_response())
}

async fn config_remove(State(api): Shared, Path(id): Path<String>) -> ApiResult<StatusCode> {
    api.ctl.remove_config(key(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn config_update(
    State(api): Shared,
    Path(id): Path<String>,
    q: Params,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let request = pb::UpdateConfigRequest {
        id_or_name: id,
        version: version(&q)?,
        spec: Some(parse::<FileSpec>(&body)?.into_config()?),
    };
    api.ctl.update_config(Request::new(request)).await?;
    Ok(StatusCode::OK)
}
