//! Choosing where tensors live.

use candle_core::Device;

/// Compute device requested on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// The CPU (all cores).
    Cpu,
    /// The first CUDA GPU (needs a build with `--features cuda`).
    Cuda,
}

impl std::str::FromStr for DeviceKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceKind::Cpu),
            "cuda" => Ok(DeviceKind::Cuda),
            _ => Err(format!("unknown device `{s}` (cpu or cuda)")),
        }
    }
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
    anyhow::bail!(
        "this dreamvid was built without CUDA support.\n  fix: build the CUDA version with scripts/cuda-build (see README), or use --device cpu"
    )
}

/// Arithmetic precision of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// 32-bit floats (everywhere).
    F32,
    /// 16-bit floats (CUDA only).
    F16,
    /// bfloat16 (CUDA only).
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(format!("unknown precision `{s}` (f32, f16 or bf16)")),
        }
    }
}

impl Precision {
    /// The candle dtype, or why this precision cannot run on `device`.
    pub fn dtype_on(self, device: &Device) -> anyhow::Result<candle_core::DType> {
        let dtype = match self {
            Precision::F32 => return Ok(candle_core::DType::F32),
            Precision::F16 => candle_core::DType::F16,
            Precision::Bf16 => candle_core::DType::BF16,
        };
        if device.is_cpu() {
            anyhow::bail!(
                "--precision {} needs --device cuda: candle's CPU backend has no half-precision matrix products; use f32 on the CPU",
                format!("{self:?}").to_lowercase()
            );
        }
        Ok(dtype)
    }
}
