//! The registrants' routes: list with filters, reload, enable and disable (docs/registrant.md).
//!
//! - `GET /v1/registrants?aor=&contact=&registrar=`: each registrant with its state, last status and
//!   next REGISTER;
//! - `POST /v1/registrants/reload?...`: reads the source again and applies the rows matching the filter
//!   (all without one);
//! - `POST /v1/registrants/enable?...`, `POST /v1/registrants/disable?...`: REGISTER now / unREGISTER
//!   now, written back to a SQLite source; a filter is required;
//! - `GET /v1/registrants/events`: the registrants' state changes as Server-Sent Events.
//!
//! Loading a source and writing SQLite are blocking: they run on tokio's blocking threads.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::server::{error, ApiContext};
use crate::registrants::{Filter, Service, ServiceError};

/// The routes, merged into the API's router.
pub fn routes() -> Router<Arc<ApiContext>> {
    Router::new()
        .route("/v1/registrants", get(list))
        .route("/v1/registrants/reload", post(reload))
        .route("/v1/registrants/enable", post(enable))
        .route("/v1/registrants/disable", post(disable))
        .route("/v1/registrants/events", get(events))
}

/// A comment line sent when nothing else was, so that idle connections stay open through proxies.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// The registrants' state changes as Server-Sent Events: `event: registrant` with the change as JSON
/// data; `event: lost` with `{"missed": N}` when this subscriber fell more than the buffer behind.
async fn events(State(ctx): State<Arc<ApiContext>>) -> Response {
    let service = match service(&ctx) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(subscription) = service.subscribe() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many registrant event subscribers; try again later",
        );
    };
    let stream = futures_util::stream::unfold(subscription, |mut sub| async move {
        use tokio::sync::broadcast::error::RecvError;
        if *sub.closed.borrow() {
            return None;
        }
        let chunk = tokio::select! {
            r = sub.events.recv() => match r {
                Ok(event) => format!(
                    "event: registrant\ndata: {}\n\n",
                    serde_json::to_string(&*event).unwrap_or_default()
                ),
                Err(RecvError::Lagged(missed)) => {
                    format!("event: lost\ndata: {{\"missed\":{missed}}}\n\n")
                }
                Err(RecvError::Closed) => return None,
            },
            // The process is stopping (or the service is gone): the stream ends.
            _ = sub.closed.changed() => return None,
            () = tokio::time::sleep(KEEP_ALIVE) => ":\n\n".to_string(),
        };
        Some((
            Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(chunk)),
            sub,
        ))
    });
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/event-stream"),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

fn service(ctx: &ApiContext) -> Result<Arc<Service>, Response> {
    ctx.registrants.clone().ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "no registrants: corereg runs without --registrants",
        )
    })
}

fn service_error(e: ServiceError) -> Response {
    let status = match e {
        ServiceError::Source(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ServiceError::Busy(_) | ServiceError::Stopped(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e.to_string())
}

async fn list(State(ctx): State<Arc<ApiContext>>, Query(filter): Query<Filter>) -> Response {
    let service = match service(&ctx) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let registrants = service.list(&filter);
    Json(json!({ "count": registrants.len(), "registrants": registrants })).into_response()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(service_error(e)),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn reload(State(ctx): State<Arc<ApiContext>>, Query(filter): Query<Filter>) -> Response {
    let service = match service(&ctx) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match blocking(move || service.reload(&filter)).await {
        Ok(report) => Json(report).into_response(),
        Err(r) => r,
    }
}

async fn set_enabled(ctx: Arc<ApiContext>, filter: Filter, enabled: bool) -> Response {
    let service = match service(&ctx) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if filter.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "name the registrants: aor, contact and/or registrar",
        );
    }
    match blocking(move || service.set_enabled(&filter, enabled)).await {
        Ok(keys) if keys.is_empty() => error(StatusCode::NOT_FOUND, "no registrant matches"),
        Ok(keys) => Json(json!({ "enabled": enabled, "registrants": keys })).into_response(),
        Err(r) => r,
    }
}

async fn enable(State(ctx): State<Arc<ApiContext>>, Query(filter): Query<Filter>) -> Response {
    set_enabled(ctx, filter, true).await
}

async fn disable(State(ctx): State<Arc<ApiContext>>, Query(filter): Query<Filter>) -> Response {
    set_enabled(ctx, filter, false).await
}
