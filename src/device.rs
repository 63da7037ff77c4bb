//! Choosing where tensors live.

use candle_core::Device;

/// Compute device requested on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceKind {
    /// The CPU (all cores).
    Cpu,
    /// The first CUDA GPU (needs a build with `--features cuda`).
    Cuda,
}

impl DeviceKind {
    /// Opens the device, or explains why it is not available.
    pub fn open(self) -> anyhow::Result<Device> {
        match self {
            DeviceKind::Cpu => Ok(Device::Cpu),
            DeviceKind::Cuda => open_cuda(),
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda() -> anyhow::Result<Device> {
    Device::new_cuda(0).map_err(|e| {
        anyhow::anyhow!(
            "cannot open CUDA device 0: {e}\n  fix: check the NVIDIA driver with `nvidia-smi`, or use --device cpu"
        )
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda() -> anyhow::Result<Device> {
    anyhow::bail!("this dreamvid was built without CUDA support.\n  fix: rebuild with `cargo build --release --features cuda` (see README), or use --device cpu")
}
