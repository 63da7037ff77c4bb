//! What each command does: load the preset and the network, run the library, show progress.
//! One file per group of commands; this one holds what they share.

mod atlas;
mod farm;
mod image;
mod inspect;
mod shell;
mod studio;
mod video;
mod zoom;

pub use atlas::atlas;
pub use farm::{assemble, plan, render, status};
pub use image::image;
pub use inspect::{compare, layers, presets, stability, weights};
pub use shell::{completions, man};
pub use studio::studio;
pub use video::video;
pub use zoom::zoom;

use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use dreamvid::models::discovery::{self, SearchRoots};
use dreamvid::models::download::{self, Progress};
use dreamvid::models::{ModelKind, WeightsError};
use dreamvid::plan::mask::Mask;
use dreamvid::plan::{load_preset, open_files, Plan, Purpose};
use dreamvid::preset::Preset;
use dreamvid::session::Session;

use crate::cli::{DreamArgs, ModelArgs};

/// A preset with flags applied, the model it runs on, and what it is for.
struct Setup {
    preset: Preset,
    session: Session,
    purpose: Purpose,
}

impl Setup {
    fn new<const S: u8>(model: &ModelArgs, dream: &DreamArgs<S>, purpose: Purpose) -> anyhow::Result<Self> {
        let (preset, kind) = load_preset(dream.preset.as_deref(), purpose, model.model, &dream.settings.given)?;
        let session = open_session(model, kind)?;
        Ok(Setup { preset, session, purpose })
    }

    /// The frames' parameters (with the preset's guide read), and the preset's mask, read.
    fn plan(&self, vary_seed: bool) -> anyhow::Result<(Plan<'_>, Option<Mask>)> {
        let (guide, mask) = open_files(&self.preset.base, self.purpose, &self.session.device)?;
        Ok((Plan { preset: &self.preset, net: &self.session.net, vary_seed, guide }, mask))
    }
}

/// The weights file of `kind`: `given` (checked if it has a published name), else the first
/// one found, else (unless `offline`) the published file, downloaded into the cache with a
/// progress bar; says on standard error which it is.
fn weights_file(given: Option<&Path>, kind: ModelKind, offline: bool) -> anyhow::Result<PathBuf> {
    let found = match given {
        Some(path) => Ok(discovery::given(kind, path)?),
        None => kind.locate_weights(),
    };
    let located = match found {
        Err(WeightsError::Missing { .. }) if !(offline || download::offline_from_env()) => {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "[{elapsed_precise}] {wide_bar} {bytes}/{total_bytes}, {bytes_per_sec}, ETA {eta}",
                )
                .expect("valid template"),
            );
            let roots = SearchRoots::from_env();
            let mirror = download::mirror_from_env();
            download::fetch(kind, &roots, mirror.as_deref(), &mut |p| match p {
                Progress::Start { url, to } => eprintln!("downloading {url}\n  to {}", to.display()),
                Progress::Bytes { done, total } => {
                    bar.set_length(total.unwrap_or(done));
                    bar.set_position(done);
                }
            })?;
            bar.finish_and_clear();
            kind.locate_weights()?
        }
        Err(WeightsError::Missing { path, fix }) => {
            return Err(WeightsError::Missing {
                path,
                fix: format!("downloads are off (--offline or {}); {fix}", download::OFFLINE_ENV),
            }
            .into())
        }
        found => found?,
    };
    eprintln!("weights: {located}");
    Ok(located.path)
}

/// Opens the device and loads `kind` from the given or default weights at the precision.
fn open_session(args: &ModelArgs, kind: ModelKind) -> anyhow::Result<Session> {
    let weights = weights_file(args.weights.as_deref(), kind, args.offline)?;
    Session::open(kind, &weights, args.device.open()?, args.precision)
}

/// A progress bar with rate and ETA; the length is set by the caller.
fn bar(unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{prefix}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit}, {{per_sec}}, ETA {{eta}} {{msg}}"
        ))
        .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}
