//! The studio: a local web app to see what every layer dreams on a picture, tune the settings
//! with a live preview, and export a preset and command line that reproduce the result.
//!
//! ```text
//! browser ──HTTP, token──▶ axum router (api.rs) ──spawn_blocking──▶ Session (one per model)
//!   page.html (embedded)     pictures, atlas, preview,             atlas tiles, previews:
//!                            export, settings table,               the library's own dream;
//!                            videos and the render queue           renders: render_video
//!                                   │
//!                                   ▼
//!                            DIR/pictures, DIR/atlas, DIR/previews (nothing outside DIR)
//! ```
//!
//! Safe by default: the server binds 127.0.0.1 unless told otherwise, every request needs the
//! random token of the URL it prints (403 without), uploads are capped and decoded with the
//! same checks as any input, and the page names pictures and models only by identifiers the
//! server made, never by paths.

mod api;
mod atlas_jobs;
mod files;
mod renders;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context;

use crate::cancel::Cancel;
use crate::models::ModelKind;
use crate::session::Session;

/// Largest picture upload accepted, in bytes.
pub const MAX_UPLOAD: usize = 32 << 20;

/// Largest video upload accepted, in bytes (the upload is held in memory until stored).
pub const MAX_VIDEO_UPLOAD: usize = 256 << 20;

/// Longest side of the pictures the preview dreams, in pixels.
pub const PREVIEW_SIZE: u32 = 384;

/// Opens the session of a model (the binary finds or downloads its weights).
pub type Opener = dyn Fn(ModelKind) -> anyhow::Result<Session> + Send + Sync;

/// How the studio runs.
pub struct Config {
    /// The working folder: every file the studio writes goes under it.
    pub dir: PathBuf,
    /// Address to listen on (127.0.0.1 unless the user exposes it).
    pub host: IpAddr,
    /// Port (0: any free one).
    pub port: u16,
    /// The token every request must carry.
    pub token: String,
    /// The model the page starts with.
    pub model: ModelKind,
}

/// What every request handler shares.
struct Studio {
    files: files::Files,
    token: String,
    model: ModelKind,
    open: Box<Opener>,
    sessions: Mutex<HashMap<ModelKind, Arc<Session>>>,
    /// Held while a model is opened.
    opening: Mutex<()>,
    /// Held while a preview or an atlas tile dreams: one at a time, each using every core
    /// (renders run beside them, slowing them down rather than waiting for hours).
    busy: Mutex<()>,
    /// Distinguishes this run's render outputs (and their checkpoints) from earlier runs' in
    /// the same folder.
    run: String,
    /// The running preview's cancel flag: a newer preview stops it.
    preview: Mutex<Cancel>,
    atlases: atlas_jobs::Atlases,
    renders: renders::Renders,
}

impl Studio {
    /// The session of `model`, opened on first use.
    fn session(&self, model: ModelKind) -> anyhow::Result<Arc<Session>> {
        if let Some(s) = lock(&self.sessions).get(&model) {
            return Ok(s.clone());
        }
        // One model at a time is opened (and its weights perhaps downloaded): a request that
        // waited here finds the model another one opened.
        let _opening = lock(&self.opening);
        if let Some(s) = lock(&self.sessions).get(&model) {
            return Ok(s.clone());
        }
        let session = Arc::new((self.open)(model)?);
        lock(&self.sessions).insert(model, session.clone());
        Ok(session)
    }
}

/// Locks `m`, also after a panic elsewhere poisoned it: the studio's shared state is plain
/// data, valid between any two statements, and one failed request must not stop the others.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `work`, turning a panic into an error (a request's or a background job's failure,
/// not the studio's).
fn contained<T>(work: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        let what =
            panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
        Err(anyhow::anyhow!("it failed unexpectedly ({})", what.unwrap_or_default()))
    })
}

/// A new random token (128 bits, hex).
pub fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no random source for the token: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Starts the server: returns the address it listens on and a future that serves until the
/// process ends.
pub async fn start(
    config: Config,
    open: Box<Opener>,
) -> anyhow::Result<(SocketAddr, impl std::future::Future<Output = std::io::Result<()>>)> {
    let files = files::Files::create(&config.dir)?;
    let studio = Arc::new(Studio {
        files,
        token: config.token,
        model: config.model,
        open,
        sessions: Mutex::new(HashMap::new()),
        opening: Mutex::new(()),
        busy: Mutex::new(()),
        preview: Mutex::new(Cancel::new()),
        atlases: atlas_jobs::Atlases::default(),
        renders: renders::Renders::default(),
        run: new_token()?[..8].to_string(),
    });
    let listener = tokio::net::TcpListener::bind((config.host, config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{} (choose another --port)", config.host, config.port))?;
    let addr = listener.local_addr()?;
    Ok((addr, std::future::IntoFuture::into_future(axum::serve(listener, api::router(studio)))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_and_leaves_the_shared_state_usable() {
        let state = Mutex::new(1);
        let failed = contained(|| -> anyhow::Result<()> {
            let _held = lock(&state);
            panic!("boom");
        });
        assert!(failed.unwrap_err().to_string().contains("boom"));
        assert!(state.is_poisoned());
        *lock(&state) += 1;
        assert_eq!(*lock(&state), 2, "the next request still gets the lock");
        assert_eq!(new_token().unwrap().len(), 32);
        assert_ne!(new_token().unwrap(), new_token().unwrap());
    }
}
