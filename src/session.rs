//! The library as a front end uses it: a model opened once, pictures dreamed with any
//! settings, each reporting its steps and stopping when cancelled. The command line is one
//! front end; a studio in the browser is another. Videos render through
//! [`crate::pipeline::render_video`], which reports every frame (with the dreamed picture and
//! the stages' times) and takes a [`Cancel`] too.

use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::{Device, Tensor};

use crate::cancel::{Cancel, Cancelled};
use crate::device::Precision;
use crate::dream::{self, mask, DreamParams, StepReport};
use crate::models::ModelKind;
use crate::nn::Network;
use crate::plan::mask::Mask;
use crate::plan::{self, Purpose};
use crate::settings::Settings;

/// A model loaded once, for any number of dreams.
pub struct Session {
    /// Which model.
    pub model: ModelKind,
    /// The weights file it was loaded from.
    pub weights: PathBuf,
    /// The network, on `device`, at the precision asked for.
    pub net: Network,
    /// Where the network runs.
    pub device: Device,
}

/// One picture's dream, ready to run: what the settings ask for on the session's model, with
/// the files they name read.
pub struct Look {
    /// The dream (layers found in the model, guide read).
    pub params: DreamParams,
    /// The mask picture, if the settings name one.
    pub mask: Option<Mask>,
    /// How strongly the picture is dreamed where the mask is white.
    pub mask_weight: f64,
}

impl Session {
    /// Loads `model` from `weights` onto `device` at `precision`.
    pub fn open(model: ModelKind, weights: &Path, device: Device, precision: Precision) -> anyhow::Result<Self> {
        let dtype = precision.dtype_on(&device)?;
        let net = model.load(weights, &device)?.to_dtype(dtype)?;
        Ok(Self { model, weights: weights.to_path_buf(), net, device })
    }

    /// The dream `settings` describe, on this model: its layers found, its guide and mask read
    /// (the settings at one moment, e.g. a preset's `at(0, fps)`; seed `settings.seed`).
    pub fn look(&self, settings: &Settings) -> anyhow::Result<Look> {
        let (guide, mask) = plan::open_files(settings, Purpose::Image, &self.device)?;
        let params = plan::guided_params(&self.net, settings, settings.seed, guide.as_ref())?;
        Ok(Look { params, mask, mask_weight: settings.mask_weight })
    }

    /// Dreams `image` (`[1, 3, H, W]`, RGB in `[0, 1]`) as `look` says, calling `on_step` after
    /// every gradient step (see [`dream::total_steps`] for how many); stops with
    /// [`Cancelled`] before the next step once `cancel` is set. Where the mask is black the
    /// result is `image` exactly.
    pub fn dream_image(
        &self,
        image: &Tensor,
        look: &Look,
        cancel: &Cancel,
        on_step: &mut dyn FnMut(StepReport),
    ) -> anyhow::Result<Tensor> {
        let (_, _, h, w) = image.dims4()?;
        let mask = look.mask.as_ref().map(|m| m.frame(0, h, w)).transpose()?;
        let strength = mask::strength(mask.as_ref(), (h, w), look.mask_weight, &self.device)?;
        if let Some(m) = &strength {
            if mask::is_zero(m)? {
                return Ok(image.clone());
            }
        }
        cancel.check()?;
        let mut step = |report| {
            on_step(report);
            cancel.flow()
        };
        let dreamed = dream::dream_until(&self.net, image, &look.params, strength.as_ref(), &mut step)
            .context("dream failed")?
            .ok_or(Cancelled)?;
        Ok(match &strength {
            Some(m) => mask::composite(&dreamed, image, m)?,
            None => dreamed,
        })
    }
}
