//! Atlases filled in the background, tile by tile, and kept on disk: a picture's atlas for a
//! model (of its layers, or of the 16 channels of a layer most active on it) is dreamed once,
//! whichever page or tab asks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::atlas::{self, ChannelPick, Subject, DEFAULT_ITERATIONS, DEFAULT_OCTAVES, DEFAULT_TILE};
use crate::cancel::Cancel;
use crate::image_io::read_picture;
use crate::models::ModelKind;
use crate::output::write_atomically;
use crate::plan::{load_preset, Purpose};

use super::lock;
use super::Studio;

/// An atlas being filled in: its tiles' labels (once known), how many are done, and what
/// went wrong, if anything.
#[derive(Default, serde::Serialize, Clone)]
pub struct Progress {
    /// Tile labels, in order.
    pub labels: Vec<String>,
    /// Tiles 0..done are on disk.
    pub done: usize,
    /// Why the atlas stopped, if it did.
    pub error: Option<String>,
}

/// An atlas's progress, shared by the thread that fills it in and the requests that ask.
type Shared = Arc<Mutex<Progress>>;

/// Channels in a channel atlas.
pub const CHANNELS: usize = 16;

/// An atlas: picture, model, and the layer whose channels it shows (none: every layer).
type Key = (String, ModelKind, Option<String>);

/// Every atlas asked for since the studio started.
#[derive(Default)]
pub struct Atlases {
    jobs: Mutex<HashMap<Key, Shared>>,
}

/// The atlas of picture `id` on `model` (of `layer`'s channels, a name of the model's, or of
/// every layer): started in the background on first request.
pub fn progress(studio: &Arc<Studio>, id: &str, model: ModelKind, layer: Option<String>) -> Progress {
    let key = (id.to_string(), model, layer);
    let mut jobs = lock(&studio.atlases.jobs);
    if let Some(p) = jobs.get(&key) {
        return lock(p).clone();
    }
    let progress = Arc::new(Mutex::new(Progress::default()));
    jobs.insert(key.clone(), progress.clone());
    let studio = studio.clone();
    std::thread::spawn(move || {
        if let Err(e) = super::contained(|| fill(&studio, &key, &progress)) {
            lock(&progress).error = Some(format!("{e:#}"));
        }
    });
    Progress::default()
}

/// Dreams the tiles one by one (each holding the studio's dream lock only for itself, so
/// previews get their turn), skipping those already on disk.
fn fill(studio: &Studio, (id, model, layer): &Key, progress: &Mutex<Progress>) -> anyhow::Result<()> {
    let session = studio.session(*model)?;
    let (preset, _) = load_preset(None, Purpose::Image, Some(*model), &[])?;
    let picture = read_picture(&studio.files.picture(id, false)?, &session.device)?;
    let picture = atlas::shrink(&picture.rgb, DEFAULT_TILE)?;
    let subject = match layer {
        None => Subject::Layers,
        Some(layer) => Subject::Channels { layer: layer.clone(), pick: ChannelPick::Top(CHANNELS) },
    };
    let specs = atlas::tiles(&session, &picture, &preset.at(0, 25.0), &subject, (DEFAULT_OCTAVES, DEFAULT_ITERATIONS))?;
    lock(progress).labels = specs.iter().map(|s| s.label.clone()).collect();
    let dir = studio.files.atlas_dir(*model, id, layer.as_deref())?;
    std::fs::create_dir_all(&dir)?;
    for (i, spec) in specs.iter().enumerate() {
        let path = dir.join(format!("{i}.png"));
        if !path.exists() {
            let tile = {
                let _turn = lock(&studio.busy);
                atlas::dream_tile(&session, &picture, spec, &Cancel::new())?
            };
            write_atomically(&path, |tmp| Ok(tile.save_with_format(tmp, image::ImageFormat::Png)?))?;
        }
        lock(progress).done = i + 1;
    }
    Ok(())
}
