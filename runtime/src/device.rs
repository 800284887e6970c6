//! Execution devices: the CPU execution provider, or CUDA through `onnxruntime-gpu`.
//!
//! CUDA is only ever registered with `error_on_failure`, so a missing CUDA build, driver or library
//! is an error at session creation instead of a silent CPU fallback; which provider really ran each
//! node is then read from ONNX Runtime's profile (see `profile.rs`).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use ort::ep::{self, ExecutionProvider, ExecutionProviderDispatch};
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};

use crate::env::Ort;
use crate::error::{ort_err, Result, RuntimeError};

/// Where a session runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    /// CUDA device ordinal.
    Cuda(i32),
}

impl FromStr for Device {
    type Err = RuntimeError;

    fn from_str(s: &str) -> Result<Device> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<i32>().ok())
                .filter(|n| *n >= 0)
                .map(Device::Cuda)
                .ok_or_else(|| RuntimeError::UnknownDevice(s.to_string())),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The onnxruntime-gpu wheel's CUDA 13 / cuDNN 9 libraries, in dependency order, relative to
/// `site-packages` (the layout of `nvidia-*` wheels that `onnxruntime-gpu[cuda,cudnn]` installs;
/// the same list `onnxruntime.preload_dlls()` uses).
const CUDA_WHEEL_LIBS: &[&str] = &[
    "nvidia/cu13/lib/libcublasLt.so.13",
    "nvidia/cu13/lib/libcublas.so.13",
    "nvidia/cu13/lib/libnvrtc.so.13",
    "nvidia/cu13/lib/libcurand.so.10",
    "nvidia/cu13/lib/libcufft.so.12",
    "nvidia/cu13/lib/libcudart.so.13",
    "nvidia/cudnn/lib/libcudnn.so.9",
];

pub(crate) const CUDA_INSTALL_HINT: &str =
    "CUDA needs the GPU build of ONNX Runtime with NVIDIA's \
    CUDA 13 and cuDNN 9 wheels, `pip install 'onnxruntime-gpu[cuda,cudnn]==1.31.1'` (pass its \
    libonnxruntime.so with --ort-lib), and an NVIDIA driver for CUDA 13; scripts/device_check.sh \
    sets this up";

impl Device {
    /// The execution providers to register for this device.
    pub(crate) fn execution_providers(self, ort: &Ort) -> Result<Vec<ExecutionProviderDispatch>> {
        match self {
            Device::Cpu => Ok(vec![ep::CPU::default().build().error_on_failure()]),
            Device::Cuda(id) => {
                let available = ep::CUDA::is_available().map_err(ort_err("listing providers"))?;
                if !available {
                    return Err(RuntimeError::Device {
                        device: self.to_string(),
                        message: format!(
                            "the ONNX Runtime library {} has no CUDA execution provider; {CUDA_INSTALL_HINT}",
                            ort.library().display()
                        ),
                    });
                }
                preload_cuda_libraries(ort.site_packages());
                Ok(vec![ep::CUDA::default()
                    .with_device_id(id)
                    .build()
                    .error_on_failure()])
            }
        }
    }

    /// Memory where state stays between steps.
    pub(crate) fn state_memory(self) -> Result<MemoryInfo<'static>> {
        let (device, id) = match self {
            Device::Cpu => (AllocationDevice::CPU, 0),
            Device::Cuda(id) => (AllocationDevice::CUDA, id),
        };
        MemoryInfo::new(device, id, AllocatorType::Device, MemoryType::Default)
            .map_err(ort_err("memory info"))
    }

    /// Host memory, for the outputs read every step.
    pub(crate) fn host_memory(self) -> Result<MemoryInfo<'static>> {
        MemoryInfo::new(
            AllocationDevice::CPU,
            0,
            AllocatorType::Device,
            MemoryType::Default,
        )
        .map_err(ort_err("memory info"))
    }

    pub fn is_cuda(self) -> bool {
        matches!(self, Device::Cuda(_))
    }
}

/// Loads the CUDA/cuDNN libraries of the `nvidia-*` wheels beside onnxruntime-gpu, so that the CUDA
/// provider finds them without LD_LIBRARY_PATH. Libraries that are absent are skipped: a system CUDA
/// on the loader path works too, and a real absence surfaces as the provider's own error.
fn preload_cuda_libraries(site_packages: Option<&Path>) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let Some(site) = site_packages else { return };
    ONCE.call_once(|| {
        for lib in CUDA_WHEEL_LIBS {
            let path = site.join(lib);
            if path.is_file() {
                // A failure here reappears, with ONNX Runtime's explanation, when the provider loads.
                let _ = ort::util::preload_dylib(&path);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!("cuda".parse::<Device>().unwrap(), Device::Cuda(0));
        assert_eq!("cuda:3".parse::<Device>().unwrap(), Device::Cuda(3));
        assert!("cuda:-1".parse::<Device>().is_err());
        assert!("gpu".parse::<Device>().is_err());
        assert_eq!(Device::Cuda(1).to_string(), "cuda:1");
    }
}
