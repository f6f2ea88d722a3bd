//! Runtime device selection: CUDA only when libcuda loads and a device exists (burn-cuda panics
//! otherwise, so the driver is probed first through `dlopen`), else the CPU `flex` backend with a
//! visible notice. A missing GPU or driver is an error message for an explicit `cuda` request,
//! never a panic.

use std::fmt;
use std::str::FromStr;

/// What the user asked for (`--device auto|cpu|cuda[:N]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceRequest {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceRequest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DeviceRequest::Auto),
            "cpu" => Ok(DeviceRequest::Cpu),
            "cuda" => Ok(DeviceRequest::Cuda(0)),
            _ => match s.strip_prefix("cuda:") {
                Some(n) => n.parse().map(DeviceRequest::Cuda).map_err(|_| format!("bad CUDA device number in {s:?} (expected cuda:N)")),
                None => Err(format!("unknown device {s:?} (expected auto, cpu, cuda or cuda:N)")),
            },
        }
    }
}

/// The device a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectedDevice {
    /// burn `flex` on the CPU.
    Cpu,
    /// burn `cuda` on device N.
    Cuda(usize),
}

impl fmt::Display for SelectedDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectedDevice::Cpu => f.write_str("cpu (flex)"),
            SelectedDevice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// What the driver probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CudaProbe {
    /// Number of CUDA devices; 0 when the driver is missing or reports none.
    pub devices: usize,
    /// Why CUDA is unavailable, when it is.
    pub problem: Option<String>,
}

/// Load libcuda and count devices (`cuInit`, `cuDeviceGetCount`) without touching burn.
pub fn probe_cuda() -> CudaProbe {
    type CuInit = unsafe extern "C" fn(u32) -> i32;
    type CuDeviceGetCount = unsafe extern "C" fn(*mut i32) -> i32;
    let mut last = String::new();
    for name in ["libcuda.so.1", "libcuda.so"] {
        // SAFETY: loading the CUDA driver library runs its initialisers; it is designed for that.
        let lib = match unsafe { libloading::Library::new(name) } {
            Ok(l) => l,
            Err(e) => {
                if last.is_empty() {
                    last = e.to_string();
                }
                continue;
            }
        };
        // SAFETY: the symbols have these C signatures in every CUDA driver API version.
        let (init, count) = unsafe {
            match (lib.get::<CuInit>(b"cuInit\0"), lib.get::<CuDeviceGetCount>(b"cuDeviceGetCount\0")) {
                (Ok(i), Ok(c)) => (*i, *c),
                _ => return CudaProbe { devices: 0, problem: Some(format!("{name} lacks cuInit/cuDeviceGetCount")) },
            }
        };
        // SAFETY: plain driver calls with valid arguments.
        let rc = unsafe { init(0) };
        if rc != 0 {
            return CudaProbe { devices: 0, problem: Some(format!("cuInit failed with CUDA error {rc} (no usable GPU or driver)")) };
        }
        let mut n = 0i32;
        // SAFETY: `n` is a valid out-pointer.
        let rc = unsafe { count(&mut n) };
        if rc != 0 {
            return CudaProbe { devices: 0, problem: Some(format!("cuDeviceGetCount failed with CUDA error {rc}")) };
        }
        // Keep the library loaded for the process: burn-cuda will use it.
        std::mem::forget(lib);
        return if n > 0 {
            CudaProbe { devices: n as usize, problem: None }
        } else {
            CudaProbe { devices: 0, problem: Some("the CUDA driver reports no devices".into()) }
        };
    }
    CudaProbe { devices: 0, problem: Some(format!("libcuda could not be loaded ({last})")) }
}

/// Whether this binary was built with the `cuda` feature.
pub const CUDA_COMPILED: bool = cfg!(feature = "cuda");

/// A choice plus the notice to show the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub device: SelectedDevice,
    pub notice: String,
}

/// Decide the device from a request, the probe and whether CUDA support is compiled in.
pub fn select_with(req: DeviceRequest, probe: &CudaProbe, cuda_compiled: bool) -> Result<Selection, String> {
    let why_not = || {
        if !cuda_compiled {
            "this build has no CUDA support (rebuild with `--features cuda`)".to_string()
        } else {
            probe.problem.clone().unwrap_or_else(|| "no CUDA device".into())
        }
    };
    match req {
        DeviceRequest::Cpu => Ok(Selection { device: SelectedDevice::Cpu, notice: "using the CPU (flex backend), as requested".into() }),
        DeviceRequest::Cuda(n) => {
            if !cuda_compiled || probe.devices == 0 {
                Err(format!("cuda:{n} was requested but CUDA is unavailable: {}", why_not()))
            } else if n >= probe.devices {
                Err(format!("cuda:{n} was requested but only {} CUDA device(s) exist", probe.devices))
            } else {
                Ok(Selection { device: SelectedDevice::Cuda(n), notice: format!("using cuda:{n} of {} device(s)", probe.devices) })
            }
        }
        DeviceRequest::Auto => {
            if cuda_compiled && probe.devices > 0 {
                Ok(Selection { device: SelectedDevice::Cuda(0), notice: format!("using cuda:0 ({} CUDA device(s) found)", probe.devices) })
            } else {
                Ok(Selection { device: SelectedDevice::Cpu, notice: format!("using the CPU (flex backend): {}", why_not()) })
            }
        }
    }
}

/// Probe and decide.
pub fn select(req: DeviceRequest) -> Result<Selection, String> {
    select_with(req, &probe_cuda(), CUDA_COMPILED)
}

/// Run a small matmul on the selected backend and return (checksum, milliseconds): proves the
/// backend actually works on this machine.
pub fn smoke_test(device: SelectedDevice) -> Result<(f32, f64), String> {
    use burn::tensor::{backend::Backend, Tensor};
    fn run<B: Backend>(dev: &B::Device) -> (f32, f64) {
        let t = std::time::Instant::now();
        let a = Tensor::<B, 2>::ones([128, 128], dev);
        let b = Tensor::<B, 2>::ones([128, 128], dev).mul_scalar(0.5);
        let c: f32 = a.matmul(b).sum().into_scalar().elem();
        (c, t.elapsed().as_secs_f64() * 1000.0)
    }
    use burn::tensor::ElementConversion;
    match device {
        SelectedDevice::Cpu => Ok(run::<burn::backend::Flex>(&Default::default())),
        #[cfg(feature = "cuda")]
        SelectedDevice::Cuda(n) => Ok(run::<burn::backend::Cuda>(&burn::backend::cuda::CudaDevice::new(n))),
        #[cfg(not(feature = "cuda"))]
        SelectedDevice::Cuda(_) => Err("this build has no CUDA support".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        assert_eq!("auto".parse::<DeviceRequest>().unwrap(), DeviceRequest::Auto);
        assert_eq!("cuda:3".parse::<DeviceRequest>().unwrap(), DeviceRequest::Cuda(3));
        assert!("gpu".parse::<DeviceRequest>().is_err());
        assert!("cuda:x".parse::<DeviceRequest>().is_err());
    }

    #[test]
    fn falls_back_to_cpu_with_a_notice_and_refuses_explicit_cuda() {
        let none = CudaProbe { devices: 0, problem: Some("libcuda could not be loaded".into()) };
        let s = select_with(DeviceRequest::Auto, &none, true).unwrap();
        assert_eq!(s.device, SelectedDevice::Cpu);
        assert!(s.notice.contains("libcuda"));
        assert!(select_with(DeviceRequest::Cuda(0), &none, true).unwrap_err().contains("unavailable"));
        let two = CudaProbe { devices: 2, problem: None };
        assert_eq!(select_with(DeviceRequest::Auto, &two, true).unwrap().device, SelectedDevice::Cuda(0));
        assert_eq!(select_with(DeviceRequest::Auto, &two, false).unwrap().device, SelectedDevice::Cpu);
        assert!(select_with(DeviceRequest::Cuda(2), &two, true).unwrap_err().contains("only 2"));
    }

    #[test]
    fn probe_never_panics_and_cpu_backend_computes() {
        let p = probe_cuda();
        assert!(p.devices > 0 || p.problem.is_some());
        let (sum, _) = smoke_test(SelectedDevice::Cpu).unwrap();
        assert_eq!(sum, 128.0 * 128.0 * 128.0 * 0.5);
    }
}
