//! The command line's definitions (clap); the settings' flags come from the settings table.

use std::path::PathBuf;
use std::str::FromStr;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Arg, ArgMatches, Args, Parser, Subcommand};

use dreamvid::device::{DeviceKind, Precision};
use dreamvid::models::ModelKind;
use dreamvid::settings::{Section, Setting, Settings, TABLE};

/// DeepDream for videos, images and infinite-zoom animations.
///
/// Amplifies what a pretrained network sees: gradient ascent on the pixels to increase the
/// activations of one layer, over several octaves (scales). Videos keep their timing and
/// audio; each frame builds on the previous dreamed frame, carried along the optical flow, so
/// the dream sticks to moving objects instead of flickering. Settings come from presets
/// (`dreamvid presets`), which flags override.
///
/// Examples:
///   dreamvid clip.mp4 -o dream.mp4                      (preset lite0-video)
///   dreamvid clip.mp4 -o dream.mp4 --preset layer30     (VGG19, the classic look)
///   dreamvid clip.mp4 -o dream.mp4 --resume             (continue an interrupted render)
///   dreamvid clip.mp4 -o dream.mp4 --preview            (12 small frames: dream.preview.png/.mp4)
///   dreamvid clip.mp4 -o dream.mp4 --start 1:30 --duration 10
///   dreamvid frames/%05d.png -o dreamed/ --fps 24       (frame folders in and out)
///   dreamvid clip.mp4 -o dream.mp4 --preset inception4c (GoogLeNet, the original DeepDream)
///   dreamvid image photo.jpg -o dream.png --layer blocks.6
///   dreamvid image photo.jpg -o dream.png --guide flowers.jpg (grow the guide's features)
///   dreamvid clip.mp4 -o dream.mp4 --mask mask.png      (dream only where the mask is white)
///   dreamvid zoom --noise -o zoom.gif --frames 48 --loop
///   dreamvid layers --model vgg19
///   dreamvid weights                                    (where weights are found)
///   dreamvid compare golden.mp4 dream.mp4 --min-psnr 35
#[derive(Parser)]
#[command(
    name = "dreamvid",
    version = env!("DREAMVID_VERSION"),
    verbatim_doc_comment,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    /// A subcommand, or none to dream a video.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Dreaming a video (the default command).
    #[command(flatten)]
    pub video: VideoArgs,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Dream on one image (PNG, JPEG, WebP, TIFF or BMP) and write the result.
    Image(ImageArgs),
    /// Grow an infinite-zoom animation from an image or noise (GIF, MP4 or PNG frames).
    Zoom(ZoomArgs),
    /// List a model's layers with their output shapes, to choose a --layer.
    Layers(LayersArgs),
    /// Dream a picture small with every layer of a model (or every channel of a layer) and
    /// label the dreams in a grid, to choose a --layer or --channels by eye.
    ///
    /// Examples:
    ///   dreamvid atlas photo.jpg -o atlas.png                            (every layer of efficientnet-lite0)
    ///   dreamvid atlas photo.jpg -o atlas.png --model vgg19
    ///   dreamvid atlas photo.jpg -o atlas.png --layer blocks.10 --channels top-16
    ///   dreamvid atlas photo.jpg -o atlas.png --layer blocks.10 --channels 0..64
    ///   dreamvid atlas photo.jpg -o atlas.png --layer blocks.10 --channels all   (pages of 64)
    #[command(verbatim_doc_comment)]
    Atlas(AtlasArgs),
    /// Open the studio: a web app on this machine to see what every layer dreams on your
    /// picture, tune the settings with a live preview, compare, and export a preset.
    ///
    /// It listens on 127.0.0.1 (this machine only) and prints a URL with a random token;
    /// requests without the token are refused. Everything it writes goes into --dir.
    ///
    /// Examples:
    ///   dreamvid studio --open
    ///   dreamvid studio --port 8765 --dir ~/dreams
    #[command(verbatim_doc_comment)]
    Studio(StudioArgs),
    /// List the shipped presets.
    Presets,
    /// List, per model, every place weights are looked for and what is there (format, checksum).
    Weights(WeightsArgs),
    /// List every setting: preset key, flag, range, default, and what it does.
    Settings,
    /// Print a shell completion script, e.g. `dreamvid completions bash >
    /// ~/.local/share/bash-completion/completions/dreamvid` (zsh: a file `_dreamvid` on $fpath;
    /// fish: ~/.config/fish/completions/dreamvid.fish).
    Completions(CompletionsArgs),
    /// Print the manual page (roff): `dreamvid man > dreamvid.1`, then `man ./dreamvid.1`; or
    /// write a page per command into a man1 folder on $MANPATH with --dir.
    Man(ManArgs),
    /// Compare two videos frame by frame (PSNR); fails if any frame is below --min-psnr.
    Compare(CompareArgs),
    /// How much flicker a dream adds to its source, per shot (warping error, static-pixel flicker).
    ///
    /// Prints, for the clip and each shot:
    /// - the warping error E_warp of the source and of the dreamed video (Lai et al. 2018): the
    ///   mean squared difference, RGB in 0..1 (squares summed over the channels), between each
    ///   frame and the previous one moved along the source's optical flow, over the pixels whose
    ///   forward and backward flows agree (Ruder et al. 2016); and the flicker the dream adds,
    ///   their difference. The flow is Farneback's (OpenCV's algorithm, with the parameters of
    ///   scripts/coherence-bench), computed on the source frames: not the flow renders carry the
    ///   dream along, which would pass a dream that follows it for steadier than it is;
    /// - the static-pixel flicker, which needs no flow: the mean squared change from one frame to
    ///   the next over the pixels where the source stands still (its change, averaged over 5x5
    ///   pixels, within twice what its noise explains), of the source and of the dream, their
    ///   ratio, and the share of such pixels;
    /// - the dream's strength (mean |dreamed - source| in 0..255) and the brightness drift (change
    ///   of the mean luma difference from the first to the last tenth of the frames).
    #[command(verbatim_doc_comment)]
    Stability(StabilityArgs),
    /// Plan a render-farm job: find a video's shots and cut it into segments (job.toml).
    Plan(PlanArgs),
    /// Render one segment of a planned job, on any machine that sees the job folder.
    Render(RenderArgs),
    /// Join the rendered segments of a job into the dreamed video (no re-encoding).
    Assemble(AssembleArgs),
    /// List the rendered and missing segments of a job.
    Status(StatusArgs),
}

/// A parser for a type with [`FromStr`] whose values are the words `names`.
fn words<T: FromStr + Clone + Send + Sync + 'static>(
    names: &'static [&'static str],
) -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(names).map(|s| s.parse::<T>().unwrap_or_else(|_| unreachable!("`{s}` is a listed value")))
}

/// The `--model` names.
const MODEL_NAMES: &[&str] = &["efficientnet-lite0", "vgg19", "googlenet"];

/// Which network, from where, on which device.
#[derive(Args)]
pub struct ModelArgs {
    /// Network: efficientnet-lite0 (free, scripts/fetch-weights), vgg19 (the classic look) or
    /// googlenet (the original DeepDream network). Default: the preset's model, else
    /// efficientnet-lite0.
    #[arg(long, value_parser = words::<ModelKind>(MODEL_NAMES))]
    pub model: Option<ModelKind>,
    /// Weights file: safetensors, or a PyTorch checkpoint (.pth, zip or legacy layout).
    /// Default: the first found of the model's file (efficientnet_lite0.safetensors,
    /// vgg19.safetensors, googlenet.safetensors, or its torch hub name: vgg19-dcbb9e9d.pth,
    /// googlenet-1378be20.pth) in
    /// $DREAMVID_WEIGHTS_DIR, ./weights, the repository's weights/; then torchvision's download
    /// in $TORCH_HOME/hub/checkpoints (else $XDG_CACHE_HOME/torch/..., ~/.cache/torch/...);
    /// then timm's in the Hugging Face cache ($HF_HUB_CACHE, else $HF_HOME/hub, else
    /// ~/.cache/huggingface/hub). Files with a published checksum are verified.
    /// `dreamvid weights` lists every place and what is there.
    #[arg(long, value_name = "PATH")]
    pub weights: Option<PathBuf>,
    /// Never download weights. Without it, a model whose weights are found nowhere is
    /// downloaded once into torch hub's cache ($TORCH_HOME/hub/checkpoints, else
    /// ~/.cache/torch/hub/checkpoints), verified by sha256; $DREAMVID_WEIGHTS_URL=URL fetches
    /// URL/<file name> instead of the published URL. Also $DREAMVID_OFFLINE=1.
    #[arg(long)]
    pub offline: bool,
    /// Where to compute: cpu (all cores) or cuda (the first GPU; needs a CUDA build).
    #[arg(long, default_value = "cpu", value_parser = words::<DeviceKind>(&["cpu", "cuda"]))]
    pub device: DeviceKind,
    /// Arithmetic precision; f16 and bf16 halve memory and run faster on GPUs (CUDA only).
    #[arg(long, default_value = "f32", value_parser = words::<Precision>(&["f32", "f16", "bf16"]))]
    pub precision: Precision,
}

/// The flags of the settings table's rows in the sections `S` (a bitmask of
/// [`section_bit`]s), as given: `(row, text)`, checked later like preset values.
pub struct SettingFlags<const S: u8> {
    /// The flags given, in table order.
    pub given: Vec<(&'static Setting, String)>,
}

/// The bit of a section in [`SettingFlags`]' mask.
pub const fn section_bit(s: Section) -> u8 {
    match s {
        Section::Dream => 1,
        Section::Video => 2,
        Section::Zoom => 4,
        Section::Compute => 8,
        Section::Encode => 16,
    }
}

/// Sections of each command's flags.
pub const IMAGE: u8 = section_bit(Section::Dream) | section_bit(Section::Compute);
/// Sections of the video command's flags.
pub const VIDEO: u8 = IMAGE | section_bit(Section::Video) | section_bit(Section::Encode);
/// Sections of the zoom command's flags.
pub const ZOOM: u8 = IMAGE | section_bit(Section::Zoom) | section_bit(Section::Encode);

impl<const S: u8> SettingFlags<S> {
    fn rows() -> impl Iterator<Item = &'static Setting> {
        TABLE.iter().filter(|s| section_bit(s.section) & S != 0)
    }
}

/// The help of one setting's flag: its text, then where presets set it and its default.
fn flag_help(row: &Setting) -> (String, String) {
    let text = row.help.trim().replace('\n', " ");
    let short = text.split(". ").next().unwrap_or(&text).trim_end_matches('.').to_string();
    let default = Settings::default().to_table().get(row.name).map(|v| v.to_string());
    let mut long = text.clone();
    match row.section.preset_table() {
        Some(table) => {
            long += &format!("\n[preset: `{}` in [{table}]", row.name);
            if row.keyframed {
                long += ", keyframable";
            }
            long += &format!("; default: the preset's, else {}]", default.unwrap_or_else(|| "none".into()));
        }
        None => long += &format!("\n[default: {}]", default.unwrap_or_else(|| "none".into())),
    }
    (short, long)
}

impl<const S: u8> Args for SettingFlags<S> {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for row in Self::rows() {
            let (short, long) = flag_help(row);
            let mut arg = Arg::new(row.name).long(row.flag()).value_name(row.shape).help(short).long_help(long);
            if let Some(alias) = row.alias {
                arg = arg.visible_alias(alias);
            }
            if !row.choices.is_empty() {
                arg = arg.value_parser(PossibleValuesParser::new(row.choices));
            }
            if row.switch {
                arg = arg.num_args(0..=1).require_equals(true).default_missing_value("true");
            }
            cmd = cmd.arg(arg.help_heading("Settings (override the preset)"));
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl<const S: u8> clap::FromArgMatches for SettingFlags<S> {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let given = Self::rows().filter_map(|row| m.get_one::<String>(row.name).map(|v| (row, v.clone()))).collect();
        Ok(Self { given })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

/// A preset, and flags that override it for the whole render.
#[derive(Args)]
pub struct DreamArgs<const S: u8> {
    /// Preset name (see `dreamvid presets`) or path to a .toml file. Default: lite0 for
    /// images, lite0-video for videos, zoom for zooms (layer30 / zoom-vgg with --model vgg19,
    /// inception4c / zoom-googlenet with --model googlenet).
    #[arg(long)]
    pub preset: Option<String>,
    /// The settings' flags.
    #[command(flatten)]
    pub settings: SettingFlags<S>,
}

/// Dreaming a video (the default command).
#[derive(Args)]
pub struct VideoArgs {
    /// Video to dream on (any container and codec FFmpeg reads), or a frame folder: a folder
    /// of PNG/JPEG/TIFF/WebP/BMP frames (in natural order) or a pattern such as
    /// frames/%05d.png (numbered without gaps).
    #[arg(required = true)]
    pub input: Option<PathBuf>,
    /// Where to write the dreamed video; the extension picks the container (.mp4, .mkv, .mov),
    /// and a path ending in / writes PNG frames (frame_00000.png, ..., and fps.txt) instead.
    #[arg(short, long, required = true)]
    pub output: Option<PathBuf>,
    /// Frame rate of a frame folder (default: the number in its fps.txt).
    #[arg(long)]
    pub fps: Option<f64>,
    /// The network.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The preset and settings.
    #[command(flatten)]
    pub dream: DreamArgs<VIDEO>,
    /// Continue an interrupted render from its per-frame checkpoints (same options needed).
    #[arg(long)]
    pub resume: bool,
    /// Start at this time, as FFmpeg's -ss: seconds (90, 2.5, 1500ms) or [HH:]MM:SS[.frac]
    /// (1:30). The output starts with the first frame at or after it, the audio cut to match;
    /// keyframes and seeds stay those of the whole video.
    #[arg(long, value_name = "TIME", value_parser = parse_time, help_heading = "Part of the video")]
    pub start: Option<f64>,
    /// Render this long (FFmpeg's -t), in the same notation as --start.
    #[arg(long, value_name = "TIME", value_parser = parse_time, conflicts_with = "frames", help_heading = "Part of the video")]
    pub duration: Option<f64>,
    /// Render this many frames (FFmpeg's -frames:v).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Part of the video")]
    pub frames: Option<u64>,
    /// Preview in seconds instead of minutes: dream every Nth frame (default: 12 frames spread
    /// over the video or its part), at most 480 pixels wide, each frame on its own; writes
    /// OUTPUT's name with .preview.mp4 and a contact sheet with .preview.png.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "0", help_heading = "Part of the video")]
    pub preview: Option<usize>,
}

/// A time on the command line, in seconds.
fn parse_time(s: &str) -> Result<f64, String> {
    dreamvid::video::excerpt::parse_time(s).map_err(|e| e.to_string())
}

/// Dreaming one image.
#[derive(Args)]
pub struct ImageArgs {
    /// Image to dream on: PNG, JPEG, WebP, TIFF or BMP (16-bit and alpha are kept where the
    /// output format has them).
    pub input: PathBuf,
    /// Where to write the dreamed image: .png, .jpg, .webp, .tif or .bmp.
    #[arg(short, long)]
    pub output: PathBuf,
    /// The network.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The preset and settings.
    #[command(flatten)]
    pub dream: DreamArgs<IMAGE>,
}

/// Growing an infinite zoom.
#[derive(Args)]
pub struct ZoomArgs {
    /// Image to start from: PNG, JPEG, WebP, TIFF or BMP (omit with --noise).
    pub seed_image: Option<PathBuf>,
    /// Start from noise instead of an image.
    #[arg(long, conflicts_with = "seed_image")]
    pub noise: bool,
    /// Output: .gif (looping), .mp4/.mkv/.mov/.webm, or a folder ending in / for PNG frames.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Number of frames.
    #[arg(long, default_value_t = 48)]
    pub frames: usize,
    /// Frames per second (also what keyframe `seconds` are measured in).
    #[arg(long, default_value_t = 12)]
    pub fps: u32,
    /// Frame size WIDTHxHEIGHT (default: the seed image's size, or 256x256 for noise).
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(usize, usize)>,
    /// Make the last frame lead seamlessly into the first (for endless playback).
    #[arg(long = "loop")]
    pub looped: bool,
    /// GIF palette quality: 1 (best, slowest) to 30 (fastest).
    #[arg(long, default_value_t = 10)]
    pub gif_quality: i32,
    /// The network.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The preset and settings.
    #[command(flatten)]
    pub dream: DreamArgs<ZOOM>,
}

fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s.split_once('x').ok_or("expected WIDTHxHEIGHT, e.g. 320x240")?;
    let (w, h) = (w.parse::<usize>().map_err(|e| e.to_string())?, h.parse::<usize>().map_err(|e| e.to_string())?);
    if !(16..=4096).contains(&w) || !(16..=4096).contains(&h) {
        return Err("width and height must be between 16 and 4096".into());
    }
    Ok((w, h))
}

/// Listing a model's layers.
#[derive(Args)]
pub struct LayersArgs {
    /// The network.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Input size (square) used to compute the output shapes.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
}

/// Making an atlas.
#[derive(Args)]
pub struct AtlasArgs {
    /// The picture: PNG, JPEG, WebP, TIFF or BMP.
    pub input: PathBuf,
    /// Where to write the atlas: .png, .jpg, .webp, .tif or .bmp. A channel atlas of more than
    /// 64 tiles goes on pages: atlas.png, atlas-2.png, ...
    #[arg(short, long)]
    pub output: PathBuf,
    /// The network.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Preset whose settings every tile is dreamed with, but its layer and the octaves and
    /// steps below (default: the model's picture preset).
    #[arg(long)]
    pub preset: Option<String>,
    /// One tile per channel of this layer (a name from `dreamvid layers`, or its number),
    /// instead of one per layer.
    #[arg(long)]
    pub layer: Option<String>,
    /// With --layer: which channels get a tile: N..M (channels N to M-1), `top-K` (the K most
    /// active on the picture, most active first; also `top K` in quotes) or `all`.
    #[arg(long, requires = "layer", default_value = "top-16")]
    pub channels: dreamvid::atlas::ChannelPick,
    /// Longest side of a tile, in pixels.
    #[arg(long, default_value_t = dreamvid::atlas::DEFAULT_TILE)]
    pub tile: u32,
    /// Octaves of each tile's dream.
    #[arg(long, default_value_t = dreamvid::atlas::DEFAULT_OCTAVES)]
    pub octaves: usize,
    /// Gradient steps per octave of each tile's dream.
    #[arg(long, default_value_t = dreamvid::atlas::DEFAULT_ITERATIONS)]
    pub iterations: usize,
}

/// Running the studio.
#[derive(Args)]
pub struct StudioArgs {
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 8765)]
    pub port: u16,
    /// Address to listen on. The default, 127.0.0.1, reaches this machine only; another address
    /// (0.0.0.0: every network this machine is on) lets anyone who can reach it and has the
    /// URL's token use the studio, its CPU and its folder.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Working folder: uploads, atlases and previews go here, and nothing outside it is written.
    #[arg(long, default_value = "dreamvid-studio")]
    pub dir: PathBuf,
    /// Open the URL in the default browser (xdg-open, open or start).
    #[arg(long)]
    pub open: bool,
    /// Device and precision (the weights are found or downloaded as for any command).
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Printing a completion script.
#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

/// Writing the manual.
#[derive(Args)]
pub struct ManArgs {
    /// Write dreamvid.1 and a page per subcommand (dreamvid-image.1, ...) into this folder
    /// instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Listing where weights are looked for.
#[derive(Args)]
pub struct WeightsArgs {
    /// Only this model.
    #[arg(long, value_parser = words::<ModelKind>(MODEL_NAMES))]
    pub model: Option<ModelKind>,
    /// First download the weights of the model (every model without --model) that are found
    /// nowhere, as its first use would: into torch hub's cache, verified by sha256
    /// ($DREAMVID_WEIGHTS_URL and $DREAMVID_OFFLINE apply). For machines that will render
    /// offline.
    #[arg(long)]
    pub fetch: bool,
}

/// Planning a render-farm job.
///
/// Decodes the video once, finds its shots (cuts; flashes and fades are no cuts) and cuts it
/// into segments: at cuts, and inside shots at most every --segment-seconds. Writes
/// JOB_DIR/job.toml with the input, the settings (preset and flags, resolved the same on every
/// machine) and the segments. Then render every segment, on as many machines as you have:
///   dreamvid render JOB_DIR --segment I          (or as Slurm array task / Indexed Job I)
///   dreamvid assemble JOB_DIR -o dream.mp4
/// scripts/slurm-render does all three on Slurm; deploy/kubernetes/ has the Kubernetes Jobs.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct PlanArgs {
    /// Video to dream on.
    pub input: PathBuf,
    /// Job folder (shared by every machine that renders; created if missing).
    #[arg(short = 'o', long = "output", value_name = "JOB_DIR")]
    pub job: PathBuf,
    /// Longest segment inside a shot, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub segment_seconds: f64,
    /// Frames a segment that starts inside a shot dreams first and throws away, so that the
    /// dream carried along has built up at its first frame.
    #[arg(long, default_value_t = 12)]
    pub warmup: usize,
    /// Frames over which two segments that meet inside a shot cross-fade (their dreams,
    /// built up from different starts, differ; only these frames are encoded again).
    #[arg(long, default_value_t = 12)]
    pub crossfade: usize,
    /// The network.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The preset and settings.
    #[command(flatten)]
    pub dream: DreamArgs<VIDEO>,
}

/// Rendering one segment of a job.
#[derive(Args)]
pub struct RenderArgs {
    /// Job folder made by `dreamvid plan`.
    pub job: PathBuf,
    /// Which segment. Default: $SLURM_ARRAY_TASK_ID, else $JOB_COMPLETION_INDEX.
    #[arg(long)]
    pub segment: Option<usize>,
    /// The network (the job says which model; --weights finds its file on this machine).
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Joining a job's segments.
#[derive(Args)]
pub struct AssembleArgs {
    /// Job folder made by `dreamvid plan`.
    pub job: PathBuf,
    /// The dreamed video (.mp4, .mkv, .mov).
    #[arg(short, long)]
    pub output: PathBuf,
}

/// A job's progress.
#[derive(Args)]
pub struct StatusArgs {
    /// Job folder made by `dreamvid plan`.
    pub job: PathBuf,
    /// Print only the number of segments (for scripts: `sbatch --array=0-$((N-1))`).
    #[arg(long)]
    pub count: bool,
}

/// Measuring the flicker a dream adds (see [`Command::Stability`]).
#[derive(Args)]
pub struct StabilityArgs {
    /// The source video or frame folder.
    pub source: PathBuf,
    /// Its dream (same frame count and size).
    pub dreamed: PathBuf,
    /// How different consecutive frames must be to count as a cut (see `dreamvid settings`).
    #[arg(long, default_value_t = Settings::default().scene_cut)]
    pub scene_cut: f64,
    /// Print one JSON object instead of the table: {"flow": "farneback", "rows": [{"scope",
    /// "first", "last", "source", "dreamed", "added", "static_source", "static_dreamed",
    /// "static_share", "strength", "drift"}]}, figures unscaled, null where there is none.
    #[arg(long)]
    pub json: bool,
}

/// Comparing two videos.
#[derive(Args)]
pub struct CompareArgs {
    /// Reference video.
    pub reference: PathBuf,
    /// Video to check against it.
    pub candidate: PathBuf,
    /// Lowest acceptable PSNR of any frame, in dB.
    #[arg(long, default_value_t = 30.0)]
    pub min_psnr: f64,
}
