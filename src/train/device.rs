//! Choosing the device a run trains on: burn's wgpu backend (Metal, Vulkan) or its CPU backend.

use std::sync::{Mutex, OnceLock};

use burn::tensor::wgpu::{WgpuBackend, wgpu};
use burn::tensor::{Device, DeviceKind as BurnDeviceKind};

use super::model::AttentionKernel;
use crate::manifest::machine::Vendor;
use crate::manifest::{DeviceChoice, DeviceKind, HardwareConfig, Precision};

/// The device a run got, and how to describe it in the run's record.
pub struct Selected {
    /// The plain (non-autodiff) device.
    pub device: Device,
    /// `wgpu/vulkan` (`wgpu/vulkan-spirv` in a `spirv` build), `wgpu/metal` or `flex` (burn's
    /// CPU backend).
    pub backend: String,
    /// The adapter's own name, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)" or "NVIDIA H100 80GB HBM3".
    pub adapter: String,
    /// The adapter's PCI vendor id (0x10de NVIDIA); 0 for the CPU backend.
    pub vendor: u32,
    /// A software rasteriser (lavapipe), not a GPU.
    pub software: bool,
}

/// Why no device could be had.
#[derive(Debug, thiserror::Error)]
#[error("no usable device: {0}")]
pub struct NoDevice(pub String);

/// A wgpu adapter found on this machine.
struct Adapter {
    name: String,
    vendor: u32,
    software: bool,
    kind: BurnDeviceKind,
}

/// The adapters of `backends` wgpu finds here, in its order.
fn enumerate(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
    descriptor.backends = backends;
    let instance = wgpu::Instance::new(descriptor);
    burn::cubecl::future::block_on(instance.enumerate_adapters(backends))
}

/// The GPU API of this platform: Metal on a Mac, Vulkan elsewhere.
fn native_backends() -> wgpu::Backends {
    if cfg!(target_os = "macos") {
        wgpu::Backends::METAL
    } else {
        wgpu::Backends::VULKAN
    }
}

fn adapters(backends: wgpu::Backends) -> Vec<Adapter> {
    let found = enumerate(backends);
    let (mut discrete, mut integrated, mut virt) = (0, 0, 0);
    found
        .into_iter()
        .map(|a| {
            let info = a.get_info();
            let kind = match info.device_type {
                wgpu::DeviceType::DiscreteGpu => {
                    discrete += 1;
                    BurnDeviceKind::DiscreteGpu(discrete - 1)
                }
                wgpu::DeviceType::IntegratedGpu => {
                    integrated += 1;
                    BurnDeviceKind::IntegratedGpu(integrated - 1)
                }
                wgpu::DeviceType::VirtualGpu => {
                    virt += 1;
                    BurnDeviceKind::VirtualGpu(virt - 1)
                }
                wgpu::DeviceType::Cpu | wgpu::DeviceType::Other => BurnDeviceKind::Cpu,
            };
            Adapter {
                name: info.name,
                vendor: info.vendor,
                software: info.device_type == wgpu::DeviceType::Cpu,
                kind,
            }
        })
        .collect()
}

/// The GPUs wgpu finds here (Metal on a Mac, Vulkan elsewhere; software adapters too), as
/// their adapters describe themselves; memory is the caller's to fill in from the drivers.
pub fn gpus() -> Vec<crate::manifest::profiles::Gpu> {
    use crate::manifest::profiles::{Gpu, GpuType, Vendor};
    enumerate(native_backends())
        .into_iter()
        .map(|a| {
            let info = a.get_info();
            let features = a.features();
            let coop = features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
                && !a.cooperative_matrix_properties().is_empty();
            Gpu {
                vendor: Vendor::of(info.vendor, &info.name),
                vendor_id: info.vendor,
                device_id: info.device,
                kind: match info.device_type {
                    wgpu::DeviceType::DiscreteGpu => GpuType::Discrete,
                    wgpu::DeviceType::IntegratedGpu => GpuType::Integrated,
                    wgpu::DeviceType::VirtualGpu => GpuType::Virtual,
                    wgpu::DeviceType::Cpu => GpuType::Software,
                    wgpu::DeviceType::Other => GpuType::Other,
                },
                api: match info.backend {
                    wgpu::Backend::Metal => "metal".into(),
                    _ => "vulkan".into(),
                },
                driver: info.driver,
                driver_info: info.driver_info,
                pci_bus: info.device_pci_bus_id,
                shader_f16: features.contains(wgpu::Features::SHADER_F16),
                cooperative_matrix: coop,
                max_buffer_gb: a.limits().max_buffer_size as f64 / 1e9,
                memory_gb: None,
                memory_source: String::new(),
                name: info.name,
            }
        })
        .collect()
}

/// How many hardware GPUs wgpu finds here through Vulkan (or Metal on a Mac): what workers
/// are spread over when no device list is given.
pub fn gpu_count() -> usize {
    adapters(native_backends())
        .iter()
        .filter(|a| !a.software)
        .count()
}

/// The names of the Vulkan adapters wgpu finds here (software ones included); empty where
/// there is no Vulkan driver.
pub fn vulkan_adapters() -> Vec<String> {
    adapters(wgpu::Backends::VULKAN)
        .into_iter()
        .map(|a| a.name)
        .collect()
}

/// wgpu runtimes, once started, by API and adapter kind: burn registers a runtime once per
/// process, so the second run of a queue must reuse the first one's device.
type Started = Mutex<Vec<(WgpuBackend, BurnDeviceKind, Device, String)>>;

fn started() -> &'static Started {
    static STARTED: OnceLock<Started> = OnceLock::new();
    STARTED.get_or_init(|| Mutex::new(Vec::new()))
}

fn wgpu_device(
    api: WgpuBackend,
    backends: wgpu::Backends,
    allow_software: bool,
    index: Option<u32>,
    precision: Precision,
) -> Result<Selected, String> {
    let label = if api == WgpuBackend::Metal {
        "metal"
    } else {
        "vulkan"
    };
    let found = adapters(backends);
    // A worker given GPU number `index` takes that one of the hardware GPUs (software ones
    // too, where they are all there is and they are allowed).
    let hardware: Vec<&Adapter> = found.iter().filter(|a| !a.software).collect();
    let candidates: Vec<&Adapter> = if hardware.is_empty() && allow_software {
        found.iter().collect()
    } else {
        hardware
    };
    if let Some(i) = index
        && !candidates.is_empty()
        && i as usize >= candidates.len()
    {
        return Err(format!(
            "no {label} GPU number {i}: this machine has {} ({})",
            candidates.len(),
            candidates
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    // A software rasteriser (lavapipe) is a GPU only in name: `auto` prefers the CPU backend.
    let adapter = candidates
        .get(index.unwrap_or(0) as usize)
        .copied()
        .ok_or_else(|| {
            if found.is_empty() {
                format!("no {label} adapter found")
            } else {
                format!(
                    "only software {label} adapters found ({})",
                    found
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        })?;
    let mut started = started().lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, device, name)) = started
        .iter()
        .find(|(a, k, _, _)| *a == api && *k == adapter.kind)
    {
        let backend = backend_name(label, device);
        if precision == Precision::F32 && backend.ends_with("-spirv") {
            return Err(format!(
                "{label} adapter {name} was started in this process for f16/bf16 work, with its                  kernels compiled to SPIR-V, where f32 products are wrong for some shapes                  (docs/gpu-bugs.md); train f32 runs in a process of their own (e.g. `xp run                  --jobs 2`, or a separate `xp run`)"
            ));
        }
        return Ok(Selected {
            backend,
            device: device.clone(),
            adapter: name.clone(),
            vendor: adapter.vendor,
            software: adapter.software,
        });
    }
    configure_fusion(precision);
    // f32 products compiled to SPIR-V come out wrong on NVIDIA GPUs for some shapes
    // (cubek's unit and gemm matmuls; docs/gpu-bugs.md), while the same kernels compiled to
    // WGSL match the CPU and are as fast in f32 (no tensor cores either way). f16/bf16
    // products need SPIR-V for cooperative matrices and were checked right there
    // (`xp bench conformance`). The compiler is the device's for the whole process.
    // `XP_SPIRV_F32=1` keeps SPIR-V for f32 too: for checking whether a newer burn fixed it.
    #[cfg(feature = "spirv")]
    cubecl_wgpu::vulkan::prefer_wgsl(
        precision == Precision::F32 && std::env::var("XP_SPIRV_F32").as_deref() != Ok("1"),
    );
    let device = Device::wgpu_options()
        .device_kind(adapter.kind.clone())
        .graphics_api(api)
        .init()
        .map_err(|e| format!("{label} adapter {} failed to start: {e}", adapter.name))?;
    started.push((
        api,
        adapter.kind.clone(),
        device.clone(),
        adapter.name.clone(),
    ));
    Ok(Selected {
        backend: backend_name(label, &device),
        device,
        adapter: adapter.name.clone(),
        vendor: adapter.vendor,
        software: adapter.software,
    })
}

/// `wgpu/vulkan` (kernels compiled to WGSL) or `wgpu/vulkan-spirv`: the compiler CubeCL
/// chose for the device, recorded with each run since speed, and which precisions work,
/// differ between the two.
fn backend_name(api: &str, device: &Device) -> String {
    use burn_backend::Backend;
    let runtime = burn_dispatch::Dispatch::name(device.as_dispatch());
    if runtime.contains("spirv") {
        format!("wgpu/{api}-spirv")
    } else {
        format!("wgpu/{api}")
    }
}

/// Whether burn's fusion may merge matrix products with the element-wise work after them, by
/// the precision of the first run that starts a wgpu device in this process (the setting is
/// burn's, process-wide, and must be made before a device starts). Measured on one H100
/// (docs/benchmarks.md): with f32 products the fused ones are slower than the plain product
/// of the same shape (WGSL +7.4% and SPIR-V +7.8% tokens/s with it off: no tensor-core kernel
/// takes them, and burn-cubecl-fusion's autotune, `optim/matmul/tune.rs`, never measures the
/// plain product against them for large products); with f16 products on tensor cores the
/// fused ones are faster (SPIR-V +10.8% with it on, burn 0.23). Without it, products take
/// burn's own matmul autotune; element-wise fusion stays either way. `XP_MATMUL_FUSION=on|off`
/// overrides the choice (a lever for benchmarks).
pub fn matmul_fusion_default(precision: Precision) -> bool {
    match precision {
        Precision::F32 => false,
        Precision::F16 | Precision::Bf16 => true,
    }
}

fn configure_fusion(precision: Precision) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // `XP_FUSION_OFF=reducebroadcasted,elementwise` turns off burn's fusions by name (a
        // lever for finding which fused kernel is wrong or slow; names as burn spells them in
        // `BUILTIN_NAMES`, any case).
        for wanted in std::env::var("XP_FUSION_OFF")
            .unwrap_or_default()
            .split(',')
        {
            let wanted = wanted.trim();
            if wanted.is_empty() {
                continue;
            }
            let name = burn_cubecl::fusion::BUILTIN_NAMES
                .iter()
                .find(|n| n.eq_ignore_ascii_case(wanted));
            match name.map(|n| (n, burn_cubecl::fusion::remove(n))) {
                Some((n, Ok(()))) => tracing::info!("fusion {n} off (XP_FUSION_OFF)"),
                Some((n, Err(e))) => tracing::warn!("fusion {n} stays on: {e}"),
                None => tracing::warn!(
                    "XP_FUSION_OFF: burn has no fusion `{wanted}` (it has {})",
                    burn_cubecl::fusion::BUILTIN_NAMES.join(", ")
                ),
            }
        }
        let fuse = match std::env::var("XP_MATMUL_FUSION").as_deref() {
            Ok("on") => true,
            Ok("off") => false,
            _ => matmul_fusion_default(precision),
        };
        if fuse {
            tracing::debug!("matmul fusion on ({precision} products)");
            return;
        }
        let matmul = burn_cubecl::fusion::BUILTIN_NAMES
            .iter()
            .find(|n| n.eq_ignore_ascii_case("matmul"));
        match matmul.map(|name| burn_cubecl::fusion::remove(name)) {
            Some(Ok(())) => tracing::debug!("matmul fusion off ({precision} products)"),
            Some(Err(e)) => tracing::warn!("matmul fusion stays on: {e}"),
            None => tracing::warn!("burn has no matmul fusion to turn off"),
        }
    });
}

fn cpu() -> Selected {
    Selected {
        device: Device::flex(),
        backend: "flex".into(),
        adapter: format!(
            "CPU, {} threads",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        ),
        vendor: 0,
        software: false,
    }
}

fn try_kind(
    kind: DeviceKind,
    explicit: bool,
    index: Option<u32>,
    precision: Precision,
) -> Result<Selected, String> {
    match kind {
        DeviceKind::Cpu => Ok(cpu()),
        DeviceKind::Vulkan => wgpu_device(
            WgpuBackend::Vulkan,
            wgpu::Backends::VULKAN,
            explicit,
            index,
            precision,
        ),
        DeviceKind::Metal if cfg!(target_os = "macos") => wgpu_device(
            WgpuBackend::Metal,
            wgpu::Backends::METAL,
            explicit,
            index,
            precision,
        ),
        DeviceKind::Metal => Err("Metal exists only on macOS".into()),
        // Only a run stored by an older xp can ask for it: manifests cannot.
        DeviceKind::Cuda => {
            Err("this build of xp has no CUDA backend (use vulkan on NVIDIA GPUs)".into())
        }
    }
}

/// The device for a run: the one named, or the first that works in the profile's order; GPU
/// number `index` of its kind when a worker was given one (the CPU has no numbers).
pub fn select(hardware: &HardwareConfig, index: Option<u32>) -> Result<Selected, NoDevice> {
    let explicit = match hardware.device {
        DeviceChoice::Auto => None,
        DeviceChoice::Cpu => Some(DeviceKind::Cpu),
        DeviceChoice::Vulkan => Some(DeviceKind::Vulkan),
        DeviceChoice::Metal => Some(DeviceKind::Metal),
        DeviceChoice::Cuda => Some(DeviceKind::Cuda),
    };
    if let Some(kind) = explicit {
        return try_kind(kind, true, index, hardware.precision).map_err(NoDevice);
    }
    let mut tried = Vec::new();
    for &kind in &hardware.device_order {
        match try_kind(kind, false, index, hardware.precision) {
            Ok(selected) => return Ok(selected),
            Err(why) => {
                tracing::info!("device {kind:?} skipped: {why}");
                tried.push(why);
            }
        }
    }
    Err(NoDevice(tried.join("; ")))
}

/// The attention kernel a model takes on the device `select` gave, with the reason recorded in
/// the run's provenance. burn 0.23's fused causal attention is wired in (`XP_ATTENTION=fused`
/// takes it: flash forward, fused backward in training; `xp bench conformance` checks it), but
/// no device takes it by default, for what was measured (docs/benchmarks.md, "Fused attention"):
///
/// - NVIDIA (H200, SPIR-V f16): slower than the explicit attention in training (270,502 against
///   425,149 tokens/s at block 256, 99,637 against 164,957 at 512), in sampling (16.3 against
///   25.0 tokens/s), its first step twice as long; in f32 (WGSL) training diverged (NaN at
///   step 50, block 256, batch 64).
/// - lavapipe: its backward is wrong at every length that is a multiple of 16
///   (docs/gpu-bugs.md).
/// - Metal: burn's causal flash kernel was wrong there (burn #4484) and nothing here has shown
///   it right since; other GPUs: neither checked nor measured here.
/// - the CPU backend has no fused attention backward (burn differentiates the decomposed one).
///
/// Attention dropout above 0 keeps even a forced fused attention explicit in training (the
/// fused kernel has no dropout). `XP_ATTENTION=fused|explicit` overrides the choice.
pub fn attention_kernel(selected: &Selected, attention_dropout: f64) -> (AttentionKernel, String) {
    let forced = match std::env::var("XP_ATTENTION").as_deref() {
        Ok("fused") => Some(AttentionKernel::Fused),
        Ok("explicit") => Some(AttentionKernel::Explicit),
        _ => None,
    };
    let (kernel, why) = if let Some(kernel) = forced {
        (kernel, "XP_ATTENTION")
    } else if selected.backend == "flex" {
        (
            AttentionKernel::Explicit,
            "burn's CPU backend has no fused attention backward",
        )
    } else if selected.backend.starts_with("wgpu/metal") {
        (
            AttentionKernel::Explicit,
            "burn's fused causal attention is not shown right on Metal",
        )
    } else if selected.software {
        (
            AttentionKernel::Explicit,
            "burn's fused attention backward is wrong on lavapipe",
        )
    } else if Vendor::of(selected.vendor, &selected.adapter) == Vendor::Nvidia {
        (
            AttentionKernel::Explicit,
            "burn's fused attention is slower on NVIDIA GPUs",
        )
    } else {
        (
            AttentionKernel::Explicit,
            "burn's fused attention is not checked on this GPU",
        )
    };
    let kernel = match kernel {
        AttentionKernel::Fused if attention_dropout > 0.0 => {
            return (
                AttentionKernel::FusedForward,
                format!(
                    "{}; explicit in training: attention dropout {attention_dropout} needs the scores",
                    AttentionKernel::FusedForward
                ),
            );
        }
        kernel => kernel,
    };
    (kernel, format!("{kernel} ({why})"))
}

/// Keeps CubeCL's autotune and kernel caches in xp's cache folder: by default CubeCL writes
/// them under the nearest folder with a Cargo.toml, which may be the user's experiment folder.
/// They persist between processes only in a build with the `persistent-cache` feature.
pub(super) fn configure_cubecl() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use burn::cubecl::config::cache::CacheConfig;
        use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
        let mut config = CubeClRuntimeConfig::default().override_from_env();
        config.environment.path = CacheConfig::Directory(crate::data::cache_dir().join("cubecl"));
        // With CubeCL's persistence compiled in, compiled kernels are kept too (SPIR-V
        // builds), not only autotune results: together they make a second start quick.
        #[cfg(feature = "persistent-cache")]
        {
            config.compilation.cache = true;
        }
        if !CubeClRuntimeConfig::try_set(config) {
            tracing::warn!("CubeCL was configured before xp could move its caches");
        }
    });
}
