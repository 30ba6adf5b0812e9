//! Turning a user's words into a burn [`Device`] and a float precision.
//!
//! This is the only place in lexforge that knows which backends exist. Everything else takes a
//! `&Device`. Backends are compiled in through this crate's cargo features (`flex`, `ndarray`,
//! `wgpu`, `cuda`), which the facade, CLI and binding switch on.

use std::fmt;
use std::str::FromStr;

use burn::tensor::{FloatDType, Tensor};
use serde::{Deserialize, Serialize};

use crate::Device;
use crate::error::{Error, Result};

const DEVICE_FORMS: &str = "auto, cpu, flex, ndarray, wgpu, cuda, cuda:N";

/// Where to run, as a user says it: `auto`, `cpu`, `flex`, `ndarray`, `wgpu`, `cuda`, `cuda:N`.
///
/// - `auto`: a CUDA device if one is compiled in and present, else a wgpu GPU adapter (not a
///   software one), else the CPU backend.
/// - `cpu`: the default CPU backend compiled in (`flex`, else `ndarray`).
/// - `flex`, `ndarray`: that CPU backend.
/// - `wgpu`: the default wgpu adapter.
/// - `cuda` is `cuda:0`.
///
/// Parsing never fails on a backend that is merely not compiled in; [`DeviceSpec::resolve`]
/// does, with [`Error::BackendNotCompiled`] naming the cargo feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// Best device available.
    #[default]
    Auto,
    /// The default CPU backend.
    Cpu,
    /// burn's pure-Rust CPU backend.
    Flex,
    /// burn's ndarray CPU backend (deprecated upstream; kept for comparison).
    NdArray,
    /// The default wgpu adapter.
    Wgpu,
    /// CUDA device number N.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        let unknown = || Error::UnknownDevice {
            spec: s.to_owned(),
            expected: DEVICE_FORMS,
        };
        Ok(match t.as_str() {
            "auto" => DeviceSpec::Auto,
            "cpu" => DeviceSpec::Cpu,
            "flex" => DeviceSpec::Flex,
            "ndarray" => DeviceSpec::NdArray,
            "wgpu" => DeviceSpec::Wgpu,
            "cuda" => DeviceSpec::Cuda(0),
            other => match other.strip_prefix("cuda:") {
                Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    DeviceSpec::Cuda(n.parse().map_err(|_| unknown())?)
                }
                _ => return Err(unknown()),
            },
        })
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Flex => f.write_str("flex"),
            DeviceSpec::NdArray => f.write_str("ndarray"),
            DeviceSpec::Wgpu => f.write_str("wgpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Runs a probe that may panic inside a backend (missing driver, no adapter) and turns the
/// panic into a reason string.
fn guarded<T>(probe: impl FnOnce() -> T) -> std::result::Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(probe)).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "the backend panicked while probing".to_owned())
    })
}

/// Runs a tiny computation on `device` and checks the answer: the definition of "usable".
fn smoke_test(device: &Device) -> std::result::Result<(), String> {
    let device = device.clone();
    let sum = guarded(move || {
        let t = Tensor::<1>::from_floats([1.0f32, 2.0, 3.5], &device);
        t.sum().into_data().try_to_vec_as::<f32>()
    })?
    .map_err(|e| format!("reading the result failed: {e:?}"))?;
    match sum.as_slice() {
        [s] if (*s - 6.5).abs() < 1e-6 => Ok(()),
        other => Err(format!("1 + 2 + 3.5 gave {other:?}")),
    }
}

#[cfg(feature = "cuda")]
fn cuda_devices() -> std::result::Result<Vec<Device>, String> {
    guarded(|| {
        Device::enumerate(burn::tensor::DeviceType::Cuda)
            .into_iter()
            .collect()
    })
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> std::result::Result<Device, String> {
    let devices: Vec<Device> = guarded(|| {
        Device::enumerate(burn::tensor::DeviceType::Wgpu)
            .into_iter()
            .collect()
    })?;
    devices
        .into_iter()
        .next()
        .ok_or_else(|| "no wgpu adapter found (install a Vulkan driver)".to_owned())
}

/// Whether a wgpu device is a CPU (software) adapter such as Mesa's lavapipe/llvmpipe: it
/// works, but slower than the native CPU backends, so `auto` never picks it.
pub fn is_software_adapter(device: &Device) -> bool {
    format!("{device:?}").to_ascii_lowercase().contains("cpu")
}

impl DeviceSpec {
    /// The backend this spec names (`None` for `auto` and `cpu`, which choose one).
    pub fn backend(&self) -> Option<&'static str> {
        match self {
            DeviceSpec::Auto | DeviceSpec::Cpu => None,
            DeviceSpec::Flex => Some("flex"),
            DeviceSpec::NdArray => Some("ndarray"),
            DeviceSpec::Wgpu => Some("wgpu"),
            DeviceSpec::Cuda(_) => Some("cuda"),
        }
    }

    /// The device this spec names, after checking the backend is compiled in and has a device.
    ///
    /// # Errors
    /// [`Error::BackendNotCompiled`] naming the cargo feature, or [`Error::NoDevice`] with what
    /// the probe found (no adapter, no driver, index out of range).
    pub fn resolve(&self) -> Result<Device> {
        match self {
            DeviceSpec::Auto => {
                #[cfg(feature = "cuda")]
                if let Ok(d) = DeviceSpec::Cuda(0).resolve() {
                    return Ok(d);
                }
                #[cfg(feature = "wgpu")]
                if let Ok(d) = wgpu_device() {
                    // Only a real GPU beats the CPU backend; a software adapter must be asked
                    // for explicitly.
                    if !is_software_adapter(&d) {
                        return Ok(d);
                    }
                }
                DeviceSpec::Cpu.resolve()
            }
            DeviceSpec::Cpu => {
                #[cfg(feature = "flex")]
                return DeviceSpec::Flex.resolve();
                #[cfg(all(not(feature = "flex"), feature = "ndarray"))]
                return DeviceSpec::NdArray.resolve();
                #[cfg(not(any(feature = "flex", feature = "ndarray")))]
                Err(Error::BackendNotCompiled {
                    backend: "cpu",
                    feature: "flex",
                })
            }
            DeviceSpec::Flex => {
                #[cfg(feature = "flex")]
                return Ok(Device::flex());
                #[cfg(not(feature = "flex"))]
                Err(Error::BackendNotCompiled {
                    backend: "flex",
                    feature: "flex",
                })
            }
            DeviceSpec::NdArray => {
                #[cfg(feature = "ndarray")]
                return Ok(Device::ndarray());
                #[cfg(not(feature = "ndarray"))]
                Err(Error::BackendNotCompiled {
                    backend: "ndarray",
                    feature: "ndarray",
                })
            }
            DeviceSpec::Wgpu => {
                #[cfg(feature = "wgpu")]
                return wgpu_device().map_err(|reason| Error::NoDevice {
                    backend: "wgpu",
                    reason,
                });
                #[cfg(not(feature = "wgpu"))]
                Err(Error::BackendNotCompiled {
                    backend: "wgpu",
                    feature: "wgpu",
                })
            }
            DeviceSpec::Cuda(index) => {
                #[cfg(feature = "cuda")]
                {
                    let devices = cuda_devices().map_err(|reason| Error::NoDevice {
                        backend: "cuda",
                        reason,
                    })?;
                    return devices.get(*index).cloned().ok_or_else(|| Error::NoDevice {
                        backend: "cuda",
                        reason: format!(
                            "asked for cuda:{index}, found {} CUDA device(s)",
                            devices.len()
                        ),
                    });
                }
                #[cfg(not(feature = "cuda"))]
                {
                    let _ = index;
                    Err(Error::BackendNotCompiled {
                        backend: "cuda",
                        feature: "cuda",
                    })
                }
            }
        }
    }
}

/// What `lexforge devices` prints for one backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendReport {
    /// Backend name, also its [`DeviceSpec`] string.
    pub name: &'static str,
    /// The cargo feature that compiles it in.
    pub feature: &'static str,
    /// Whether this build includes it.
    pub compiled: bool,
    /// Whether a device was found and computed `1 + 2 + 3.5` correctly.
    pub usable: bool,
    /// The device found, or why not.
    pub detail: String,
    /// Whether `auto` picks this backend here.
    pub auto: bool,
    /// Why `auto` picks this backend or not (its rule: a CUDA device, else a hardware wgpu
    /// adapter, else the CPU backend).
    pub auto_reason: String,
    /// The precisions the device computes in (empty when not usable).
    pub precisions: Vec<Precision>,
}

/// Probes every backend lexforge knows: compiled in, device present, a tiny sum correct.
/// Never panics; a backend that panics while probing is reported unusable with the message.
pub fn backend_reports() -> Vec<BackendReport> {
    let auto = DeviceSpec::Auto.resolve().ok();
    let specs = [
        (DeviceSpec::Flex, "flex"),
        (DeviceSpec::NdArray, "ndarray"),
        (DeviceSpec::Wgpu, "wgpu"),
        (DeviceSpec::Cuda(0), "cuda"),
    ];
    let reports: Vec<BackendReport> = specs
        .into_iter()
        .map(|(spec, name)| match spec.resolve() {
            Err(e @ Error::BackendNotCompiled { .. }) => BackendReport {
                name,
                feature: name,
                compiled: false,
                usable: false,
                detail: e.to_string(),
                auto: false,
                auto_reason: format!("not picked: not compiled in (cargo feature `{name}`)"),
                precisions: Vec::new(),
            },
            Err(e) => BackendReport {
                name,
                feature: name,
                compiled: true,
                usable: false,
                detail: e.to_string(),
                auto: false,
                auto_reason: "not picked: no usable device".to_owned(),
                precisions: Vec::new(),
            },
            Ok(device) => {
                let (usable, detail) = match smoke_test(&device) {
                    Ok(()) => (true, format!("{device:?}")),
                    Err(why) => (false, format!("{device:?}: {why}")),
                };
                let precisions = if usable {
                    guarded(|| Precision::supported_on(&device)).unwrap_or_default()
                } else {
                    Vec::new()
                };
                let picked = auto.as_ref() == Some(&device);
                let auto_reason = match (name, picked, usable) {
                    (_, _, false) => "not picked: the device failed the smoke test".to_owned(),
                    ("cuda", true, _) => "picked: a CUDA device comes first".to_owned(),
                    ("wgpu", true, _) => "picked: a hardware GPU adapter, no CUDA device".into(),
                    ("wgpu", false, _) if is_software_adapter(&device) => {
                        "not picked: a software (CPU) adapter, slower than the CPU backends; \
                         ask for it with `--device wgpu`"
                            .to_owned()
                    }
                    (_, true, _) => "picked: no CUDA device or hardware GPU adapter".to_owned(),
                    ("ndarray", false, _) if cfg!(feature = "flex") => {
                        "not picked: the CPU fallback is flex when it is compiled in".to_owned()
                    }
                    (_, false, _) => "not picked: a GPU backend comes first".to_owned(),
                };
                BackendReport {
                    name,
                    feature: name,
                    compiled: true,
                    usable,
                    detail,
                    auto: picked,
                    auto_reason,
                    precisions,
                }
            }
        })
        .collect();
    reports
}

/// The float element type to compute in.
///
/// `auto` is `f32` on every device: reduced precision changes results and must be asked for.
/// `f16` and `bf16` are accepted only where the device computes in them
/// ([`Device::supports_dtype`]); otherwise [`Error::UnsupportedPrecision`] lists what the
/// device does support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// `f32` unless a pipeline documents otherwise.
    #[default]
    Auto,
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16.
    Bf16,
}

impl FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Precision::Auto),
            "f32" | "float32" => Ok(Precision::F32),
            "f16" | "float16" | "half" => Ok(Precision::F16),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            _ => Err(Error::UnknownPrecision { spec: s.to_owned() }),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        })
    }
}

impl Precision {
    fn dtype(self) -> FloatDType {
        match self {
            Precision::Auto | Precision::F32 => FloatDType::F32,
            Precision::F16 => FloatDType::F16,
            Precision::Bf16 => FloatDType::BF16,
        }
    }

    /// The precision `device` is configured to compute in (f32 unless configured otherwise).
    pub fn of(device: &Device) -> Precision {
        match device.settings().float_dtype {
            FloatDType::F16 => Precision::F16,
            FloatDType::BF16 => Precision::Bf16,
            _ => Precision::F32,
        }
    }

    /// The concrete precisions `device` computes in.
    pub fn supported_on(device: &Device) -> Vec<Precision> {
        [Precision::F32, Precision::F16, Precision::Bf16]
            .into_iter()
            .filter(|p| device.supports_dtype(p.dtype()))
            .collect()
    }

    /// The concrete precision to use on `device` (`auto` becomes `f32`).
    ///
    /// # Errors
    /// [`Error::UnsupportedPrecision`] naming the alternatives.
    pub fn resolve(self, device: &Device) -> Result<Precision> {
        let concrete = if self == Precision::Auto {
            Precision::F32
        } else {
            self
        };
        if device.supports_dtype(concrete.dtype()) {
            Ok(concrete)
        } else {
            Err(Error::UnsupportedPrecision {
                precision: concrete.to_string(),
                device: format!("{device:?}"),
                supported: Self::supported_on(device)
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }

    /// Resolves and makes it the default float type of `device`. Must run before any tensor is
    /// created on the device (burn fixes a device's defaults at first use).
    pub fn apply(self, device: &mut Device) -> Result<Precision> {
        let concrete = self.resolve(device)?;
        if device.settings().float_dtype == concrete.dtype() {
            return Ok(concrete);
        }
        device
            .configure(concrete.dtype())
            .map_err(|e| Error::DeviceConfig {
                precision: concrete.to_string(),
                device: format!("{device:?}"),
                reason: format!("{e:?}"),
            })?;
        Ok(concrete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn parses_every_documented_form() {
        let cases = [
            ("auto", DeviceSpec::Auto),
            ("CPU", DeviceSpec::Cpu),
            (" flex ", DeviceSpec::Flex),
            ("ndarray", DeviceSpec::NdArray),
            ("wgpu", DeviceSpec::Wgpu),
            ("cuda", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
        ];
        for (s, want) in cases {
            assert_eq!(s.parse::<DeviceSpec>().unwrap(), want, "{s}");
            // Display round-trips.
            assert_eq!(want.to_string().parse::<DeviceSpec>().unwrap(), want);
        }
    }

    #[test]
    fn parse_errors_are_typed_and_list_the_forms() {
        for bad in [
            "",
            "gpu",
            "cuda:",
            "cuda:-1",
            "cuda:x",
            "cuda:1:2",
            "cuda: 1",
            "tpu",
            "cuda:99999999999999999999999",
        ] {
            let err = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(matches!(err, Error::UnknownDevice { .. }), "{bad}: {err}");
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
            assert!(err.to_string().contains("cuda:N"), "{err}");
        }
    }

    #[test]
    fn serde_uses_the_string_form() {
        let s: DeviceSpec = serde_json::from_str("\"cuda:1\"").unwrap();
        assert_eq!(s, DeviceSpec::Cuda(1));
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"cuda:1\"");
        assert!(serde_json::from_str::<DeviceSpec>("\"gpu\"").is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn backend_not_compiled_names_the_feature() {
        let err = DeviceSpec::Cuda(0).resolve().unwrap_err();
        assert!(
            matches!(
                err,
                Error::BackendNotCompiled {
                    feature: "cuda",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.kind(), ErrorKind::Device);
        assert!(err.to_string().contains("`cuda`"));
    }

    #[cfg(not(feature = "wgpu"))]
    #[test]
    fn wgpu_not_compiled_is_typed() {
        assert!(matches!(
            DeviceSpec::Wgpu.resolve().unwrap_err(),
            Error::BackendNotCompiled {
                feature: "wgpu",
                ..
            }
        ));
    }

    #[test]
    fn precision_parses() {
        assert_eq!("BF16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert_eq!("half".parse::<Precision>().unwrap(), Precision::F16);
        assert!(matches!(
            "f8".parse::<Precision>().unwrap_err(),
            Error::UnknownPrecision { .. }
        ));
    }

    #[cfg(feature = "flex")]
    #[test]
    fn cpu_and_auto_resolve_to_a_working_cpu_device() {
        let cpu = DeviceSpec::Cpu.resolve().unwrap();
        assert_eq!(cpu, DeviceSpec::Flex.resolve().unwrap());
        smoke_test(&cpu).unwrap();
        #[cfg(not(feature = "cuda"))]
        assert_eq!(DeviceSpec::Auto.resolve().unwrap(), cpu);
        let reports = backend_reports();
        let flex = reports.iter().find(|r| r.name == "flex").unwrap();
        assert!(flex.compiled && flex.usable, "{flex:?}");
        assert!(flex.auto);
    }

    #[cfg(feature = "flex")]
    #[test]
    fn precision_rule_on_cpu() {
        let device = DeviceSpec::Flex.resolve().unwrap();
        assert_eq!(Precision::Auto.resolve(&device).unwrap(), Precision::F32);
        let supported = Precision::supported_on(&device);
        assert!(supported.contains(&Precision::F32));
        for p in [Precision::F16, Precision::Bf16] {
            match p.resolve(&device) {
                Ok(got) => assert!(supported.contains(&got)),
                Err(Error::UnsupportedPrecision { supported: s, .. }) => {
                    assert!(s.contains("f32"), "{s}")
                }
                Err(other) => panic!("{other}"),
            }
        }
    }
}
