//! `GET /v1/models` and `GET /v1/models/{id}`: what the sidecars report, plus
//! DEFAULT_MODEL (the naming rules are in `crate::models`).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Json, Response};

use super::AppState;
use crate::models;
use crate::openai::response::{Model, ModelList};

pub async fn list_models(State(state): State<AppState>) -> Response {
    let known = state.chat.pool.models();
    let default = &state.chat.settings.default_model;
    let mut data: Vec<Model<'_>> = known
        .iter()
        .map(|m| model(&m.id, state.started_unix))
        .collect();
    if !known.iter().any(|m| &m.id == default) {
        data.insert(0, model(default, state.started_unix));
    }
    Json(ModelList {
        object: "list",
        data,
    })
    .into_response()
}

pub async fn get_model(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let known = state.chat.pool.models();
    let default = &state.chat.settings.default_model;
    match models::lookup(&id, &known, default) {
        Some(_) => Json(model(&id, state.started_unix)).into_response(),
        None => models::model_not_found(&id).into_response(),
    }
}

fn model(id: &str, created: u64) -> Model<'_> {
    Model {
        id,
        object: "model",
        created,
        owned_by: "lingma",
    }
}
