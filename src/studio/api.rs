//! The studio's HTTP API and page. Every route needs the token; dreams run on blocking
//! threads, one at a time.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::atlas_jobs;
use super::files::Files;
use super::lock;
use super::renders;
use super::{Studio, MAX_UPLOAD, MAX_VIDEO_UPLOAD};
use crate::cancel::{Cancel, Cancelled};
use crate::image_io::{read_picture, write_picture};
use crate::models::ModelKind;
use crate::plan::{default_preset, load_preset, Purpose};
use crate::settings::{self, Range, Section, Setting, TABLE};

/// The page, embedded in the binary.
const PAGE: &str = include_str!("page.html");

/// An error as the page sees it: a status and a line of text.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

fn bad(e: impl std::fmt::Display) -> Failure {
    Failure(StatusCode::BAD_REQUEST, format!("{e:#}"))
}

fn failed(e: anyhow::Error) -> Failure {
    match e.is::<Cancelled>() {
        true => Failure(StatusCode::CONFLICT, "superseded by a newer preview".into()),
        false => Failure(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")),
    }
}

/// The routes, behind the token check.
pub fn router(studio: Arc<Studio>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/settings", get(settings_rows))
        .route("/api/models", get(models))
        .route("/api/pictures", post(upload).layer(DefaultBodyLimit::max(MAX_UPLOAD)))
        .route("/api/pictures/{id}", get(picture))
        .route("/api/atlas", get(atlas))
        .route("/api/atlas/{model}/{id}/{index}", get(atlas_tile))
        .route("/api/preview", post(preview))
        .route("/api/export", post(export))
        .route("/api/videos", post(upload_video).layer(DefaultBodyLimit::max(MAX_VIDEO_UPLOAD)))
        .route("/api/renders", get(list_renders).post(start_render))
        .route("/api/renders/{id}/frame", get(render_frame))
        .route("/api/renders/{id}/cancel", post(cancel_render))
        .route("/api/renders/{id}/resume", post(resume_render))
        .route("/api/renders/{id}/output", get(render_output))
        .layer(middleware::from_fn_with_state(studio.clone(), check_token))
        .with_state(studio)
}

/// Refuses (403) a request without the studio's token, in the `token` query parameter or the
/// `x-dreamvid-token` header.
async fn check_token(State(studio): State<Arc<Studio>>, request: Request, next: Next) -> Response {
    let from_query =
        request.uri().query().into_iter().flat_map(|q| q.split('&')).find_map(|kv| kv.strip_prefix("token="));
    let from_header = request.headers().get("x-dreamvid-token").and_then(|v| v.to_str().ok());
    // Compared in constant time, so its timing tells nothing of the token.
    let matches = |t: &str| {
        t.len() == studio.token.len() && t.bytes().zip(studio.token.bytes()).fold(0, |acc, (a, b)| acc | (a ^ b)) == 0
    };
    if from_query.or(from_header).is_some_and(matches) {
        return next.run(request).await;
    }
    Failure(StatusCode::FORBIDDEN, "this studio needs the token of the URL `dreamvid studio` printed".into())
        .into_response()
}

/// Runs `work` on a blocking thread.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, Failure> + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(Failure(StatusCode::INTERNAL_SERVER_ERROR, format!("the work panicked: {e}"))))
}

fn model(name: &str) -> Result<ModelKind, Failure> {
    name.parse().map_err(bad)
}

fn png(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "no-store")], bytes).into_response()
}

fn read_file(path: std::path::PathBuf) -> Result<Response, Failure> {
    std::fs::read(&path).map(png).map_err(|_| Failure(StatusCode::NOT_FOUND, "no such picture".into()))
}

/// Whether the page offers and takes setting `row`: the dream's settings, but file paths.
fn offered(row: &Setting) -> bool {
    row.section == Section::Dream && row.shape != "PATH"
}

#[derive(Deserialize)]
struct ModelQuery {
    model: String,
}

/// The settings the page shows, from the settings table: name, help, shape, choices, range,
/// and the value in the model's picture preset.
async fn settings_rows(Query(q): Query<ModelQuery>) -> Result<Json<serde_json::Value>, Failure> {
    let kind = model(&q.model)?;
    let (preset, _) = load_preset(None, Purpose::Image, Some(kind), &[]).map_err(bad)?;
    let values = preset.at(0, 25.0).to_table();
    let rows: Vec<serde_json::Value> = TABLE
        .iter()
        .filter(|r| offered(r))
        .map(|r| {
            let (min, max) = match r.range {
                Range::Any => (None, None),
                Range::Span(a, b) => (Some(a), Some(b)),
                Range::ZeroOr(_, b) => (Some(0.0), Some(b)),
            };
            json!({
                "name": r.name, "flag": r.flag(), "help": r.help, "shape": r.shape, "choices": r.choices,
                "switch": r.switch, "min": min, "max": max,
                "value": values.get(r.name).map(flag_text).unwrap_or_default(),
            })
        })
        .collect();
    Ok(Json(json!({ "preset": default_preset(Purpose::Image, kind), "settings": rows })))
}

/// A setting's value as its flag takes it.
fn flag_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        // Weighted layers are `[["name", weight], ...]`; their flag is `name=weight,...`.
        toml::Value::Array(a) => a
            .iter()
            .map(|v| match v.as_array().map(Vec::as_slice) {
                Some([toml::Value::String(name), w]) => format!("{name}={}", flag_text(w)),
                _ => flag_text(v),
            })
            .collect::<Vec<_>>()
            .join(","),
        toml::Value::Table(t) => t.iter().map(|(k, w)| format!("{k}={}", flag_text(w))).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Every model and its layers, the one to start with first.
async fn models(State(studio): State<Arc<Studio>>) -> Json<serde_json::Value> {
    let first = std::iter::once(studio.model).chain(ModelKind::ALL.into_iter().filter(|&m| m != studio.model));
    let list: Vec<_> = first
        .map(|m| json!({ "name": m.name(), "default_layer": m.default_layer(), "layers": m.layer_names() }))
        .collect();
    Json(json!(list))
}

/// `POST /api/pictures`: the body is the picture's file.
async fn upload(State(studio): State<Arc<Studio>>, body: Bytes) -> Result<Json<serde_json::Value>, Failure> {
    blocking(move || Ok(Json(json!(studio.files.store_picture(&body).map_err(bad)?)))).await
}

/// `GET /api/pictures/ID`: the picture at preview size.
async fn picture(State(studio): State<Arc<Studio>>, Path(id): Path<String>) -> Result<Response, Failure> {
    read_file(studio.files.picture(&id, true).map_err(bad)?)
}

#[derive(Deserialize)]
struct AtlasQuery {
    picture: String,
    model: String,
    /// Of this layer's channels (else of every layer).
    layer: Option<String>,
}

/// `GET /api/atlas?picture=ID&model=M[&layer=L]`: the atlas's progress (started on first
/// request).
async fn atlas(
    State(studio): State<Arc<Studio>>,
    Query(q): Query<AtlasQuery>,
) -> Result<Json<serde_json::Value>, Failure> {
    let (id, kind) = (Files::id(&q.picture).map_err(bad)?.to_string(), model(&q.model)?);
    studio.files.atlas_dir(kind, &id, q.layer.as_deref()).map_err(bad)?;
    if !studio.files.picture(&id, false).map_err(bad)?.exists() {
        return Err(Failure(StatusCode::NOT_FOUND, "no such picture".into()));
    }
    Ok(Json(json!(atlas_jobs::progress(&studio, &id, kind, q.layer))))
}

#[derive(Deserialize)]
struct TileQuery {
    layer: Option<String>,
}

/// `GET /api/atlas/MODEL/ID/N[?layer=L]`: tile N.
async fn atlas_tile(
    State(studio): State<Arc<Studio>>,
    Path((name, id, index)): Path<(String, String, usize)>,
    Query(q): Query<TileQuery>,
) -> Result<Response, Failure> {
    let dir = studio.files.atlas_dir(model(&name)?, &id, q.layer.as_deref()).map_err(bad)?;
    read_file(dir.join(format!("{index}.png")))
}

/// What the page asks a preview or an export of.
#[derive(Deserialize, Clone)]
struct Look {
    picture: String,
    model: String,
    /// Setting name -> value as its flag takes it.
    settings: BTreeMap<String, String>,
}

impl Look {
    /// The flags, checked: settings the page offers, each value read as its flag would be.
    fn flags(&self, kind: ModelKind) -> Result<Vec<(&'static Setting, String)>, Failure> {
        self.settings
            .iter()
            .map(|(name, value)| {
                let row = settings::find(name)
                    .filter(|r| offered(r))
                    .ok_or_else(|| bad(format!("the studio takes no setting `{name}`")))?;
                row.parse_flag(value, Some(kind)).map_err(bad)?;
                Ok((row, value.clone()))
            })
            .collect()
    }
}

/// `POST /api/preview`: the picture at preview size dreamed with the settings, as PNG. A
/// newer preview stops this one (409).
async fn preview(State(studio): State<Arc<Studio>>, Json(look): Json<Look>) -> Result<Response, Failure> {
    let cancel = Cancel::new();
    std::mem::replace(&mut *lock(&studio.preview), cancel.clone()).cancel();
    blocking(move || {
        let kind = model(&look.model)?;
        let flags = look.flags(kind)?;
        let input = studio.files.picture(&look.picture, true).map_err(bad)?;
        let key = crate::preset::text_hash(&format!("{}\n{}\n{:?}", look.picture, kind.name(), look.settings));
        let path = studio.files.preview(key);
        if !path.exists() {
            let (preset, _) = load_preset(None, Purpose::Image, Some(kind), &flags).map_err(bad)?;
            let session = studio.session(kind).map_err(failed)?;
            let source = read_picture(&input, &session.device)
                .map_err(|_| Failure(StatusCode::NOT_FOUND, "no such picture".into()))?;
            let look = session.look(&preset.at(0, 25.0)).map_err(bad)?;
            let _turn = lock(&studio.busy);
            let dreamed = session.dream_image(&source.rgb, &look, &cancel, &mut |_| {}).map_err(failed)?;
            write_picture(&dreamed, &source, &path).map_err(failed)?;
        }
        read_file(path)
    })
    .await
}

/// `POST /api/export`: a preset and command lines that reproduce the preview exactly.
async fn export(State(studio): State<Arc<Studio>>, Json(look): Json<Look>) -> Result<Json<serde_json::Value>, Failure> {
    let kind = model(&look.model)?;
    let flags = look.flags(kind)?;
    let (preset, _) = load_preset(None, Purpose::Image, Some(kind), &flags).map_err(bad)?;
    let values = preset.at(0, 25.0).to_table();
    let mut dream = toml::Table::new();
    for row in TABLE.iter().filter(|r| r.section == Section::Dream) {
        if let Some(v) = values.get(row.name) {
            dream.insert(row.name.into(), v.clone());
        }
    }
    let mut text = toml::Table::new();
    text.insert("description".into(), "exported from dreamvid studio".into());
    text.insert("model".into(), kind.name().into());
    text.insert("dream".into(), toml::Value::Table(dream));
    let toml_text = toml::to_string(&text).map_err(bad)?;
    let input = studio.files.picture(&look.picture, true).map_err(bad)?;
    let quote = |s: &str| match s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.,=/:".contains(c)) {
        true => s.to_string(),
        false => format!("'{}'", s.replace('\'', r"'\''")),
    };
    let mut command =
        format!("dreamvid image {} -o dream.png --model {}", quote(&input.display().to_string()), kind.name());
    for (row, value) in &flags {
        command += &format!(" --{} {}", row.flag(), quote(value));
    }
    Ok(Json(json!({
        "preset": toml_text,
        "command": command,
        "preset_command": format!("dreamvid image {} -o dream.png --preset dream.toml", quote(&input.display().to_string())),
        "picture": input.display().to_string(),
    })))
}

/// `POST /api/videos`: the body is the video's file, `x-file-name` a name with its extension.
async fn upload_video(
    State(studio): State<Arc<Studio>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, Failure> {
    let name = headers.get("x-file-name").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    blocking(move || Ok(Json(json!(studio.files.store_video(&name, &body).map_err(bad)?)))).await
}

/// What the page asks a render of: a stored video, or a zoom of `frames` into a stored picture.
#[derive(Deserialize)]
struct RenderRequest {
    video: Option<String>,
    zoom: Option<String>,
    frames: Option<usize>,
    model: String,
    settings: BTreeMap<String, String>,
}

/// Most frames of a studio zoom.
const MAX_ZOOM_FRAMES: usize = 1000;

/// `POST /api/renders`: queues a render of a stored video, or a zoom, with the settings.
async fn start_render(
    State(studio): State<Arc<Studio>>,
    Json(request): Json<RenderRequest>,
) -> Result<Json<serde_json::Value>, Failure> {
    let kind = model(&request.model)?;
    let look = Look { picture: String::new(), model: request.model, settings: request.settings };
    let flags = look.flags(kind)?;
    let what = match (&request.video, &request.zoom) {
        (Some(video), None) => renders::What::Video(studio.files.video(video).map_err(bad)?),
        (None, Some(picture)) => {
            let frames = request.frames.unwrap_or(48);
            if !(1..=MAX_ZOOM_FRAMES).contains(&frames) {
                return Err(bad(format!("a zoom has 1 to {MAX_ZOOM_FRAMES} frames (got {frames})")));
            }
            renders::What::Zoom { picture: studio.files.picture(picture, true).map_err(bad)?, frames }
        }
        _ => return Err(bad("give a video, or a picture to zoom into")),
    };
    let input = match &what {
        renders::What::Video(path) | renders::What::Zoom { picture: path, .. } => path,
    };
    if !input.exists() {
        return Err(Failure(StatusCode::NOT_FOUND, "no such video or picture".into()));
    }
    Ok(Json(json!({ "id": renders::queue(&studio, what, kind, flags) })))
}

/// `GET /api/renders`: every render, oldest first.
async fn list_renders(State(studio): State<Arc<Studio>>) -> Json<serde_json::Value> {
    Json(json!(studio.renders.list()))
}

fn render(studio: &Studio, id: usize) -> Result<Arc<renders::Render>, Failure> {
    studio.renders.get(id).ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("no render {id}")))
}

/// `GET /api/renders/N/frame`: its latest frame.
async fn render_frame(State(studio): State<Arc<Studio>>, Path(id): Path<usize>) -> Result<Response, Failure> {
    render(&studio, id)?.latest().map(png).ok_or_else(|| Failure(StatusCode::NOT_FOUND, "no frame yet".into()))
}

/// `POST /api/renders/N/cancel`.
async fn cancel_render(State(studio): State<Arc<Studio>>, Path(id): Path<usize>) -> Result<StatusCode, Failure> {
    render(&studio, id)?.cancel();
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/renders/N/resume`: a cancelled or failed render queued again, from its checkpoints.
async fn resume_render(State(studio): State<Arc<Studio>>, Path(id): Path<usize>) -> Result<StatusCode, Failure> {
    match renders::resume(&studio, render(&studio, id)?) {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(Failure(StatusCode::CONFLICT, "only a cancelled or failed render resumes".into())),
    }
}

/// `GET /api/renders/N/output`: the finished video, as a download.
async fn render_output(State(studio): State<Arc<Studio>>, Path(id): Path<usize>) -> Result<Response, Failure> {
    let name =
        render(&studio, id)?.status().output.ok_or_else(|| Failure(StatusCode::NOT_FOUND, "not finished".into()))?;
    let bytes =
        tokio::fs::read(studio.files.render(&name)).await.map_err(|_| Failure(StatusCode::NOT_FOUND, "gone".into()))?;
    let disposition = format!("attachment; filename=\"{name}\"");
    Ok(([(header::CONTENT_TYPE, "video/mp4".to_string()), (header::CONTENT_DISPOSITION, disposition)], bytes)
        .into_response())
}
