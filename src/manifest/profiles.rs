//! Hardware profiles: the machines our users own, and picking one for this machine.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::types::{DeviceKind, Precision, ProfileDef};

/// Share of a machine's memory a run may plan to use unless a profile says otherwise.
pub const DEFAULT_BUDGET_SHARE: f64 = 0.75;

/// A resolved hardware profile.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HardwareProfile {
    pub name: String,
    pub description: String,
    pub device_order: Vec<DeviceKind>,
    pub memory_gb: f64,
    pub memory_budget_gb: f64,
    pub batch_size: u32,
    pub grad_accum: u32,
    pub precision: Precision,
    pub loader_threads: u32,
    /// Runs trained at once on this machine (`executor.jobs`).
    pub jobs: u32,
}

impl HardwareProfile {
    /// The settings this profile contributes to a run's config (its layer).
    pub fn layer(&self) -> Value {
        json!({
            "train": { "batch_size": self.batch_size, "grad_accum": self.grad_accum },
            "hardware": {
                "profile": self.name,
                "device_order": self.device_order,
                "memory_budget_gb": self.memory_budget_gb,
                "precision": self.precision,
                "loader_threads": self.loader_threads,
            },
            "executor": { "jobs": self.jobs },
        })
    }
}

pub use super::machine::{Gpu, GpuType, Machine, Vendor};

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Where a built-in profile's values come from.
#[derive(Clone, Copy)]
enum Basis {
    /// Fixed figures: a machine we measured or our users own.
    Fixed {
        memory_gb: f64,
        precision: Precision,
    },
    /// This machine's RAM (the CPU profile).
    Ram,
    /// A GPU family: memory and precision from the best GPU of `vendor` found here (any
    /// hardware GPU for `None`), batch from memory; `fallback_gb` where none is found.
    Family {
        vendor: Option<Vendor>,
        fallback_gb: f64,
    },
    /// Apple silicon: unified memory is the machine's RAM.
    Unified,
}

struct Builtin {
    name: &'static str,
    description: &'static str,
    device_order: &'static [DeviceKind],
    basis: Basis,
    /// A fixed batch; `None` derives it from memory.
    batch_size: Option<u32>,
    loader_threads: u32,
    jobs: u32,
}

const GPU_ORDER: &[DeviceKind] = &[DeviceKind::Vulkan, DeviceKind::Cpu];
const APPLE_ORDER: &[DeviceKind] = &[DeviceKind::Metal, DeviceKind::Cpu];

// Families first (what `auto` picks from what it detects), then the refinements we have
// figures for, then the fixed profiles manifests already name.
const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "amd",
        description: "AMD GPU through Vulkan; memory from the amdgpu driver",
        device_order: GPU_ORDER,
        basis: Basis::Family {
            vendor: Some(Vendor::Amd),
            fallback_gb: 16.0,
        },
        batch_size: None,
        loader_threads: 4,
        jobs: 1,
    },
    Builtin {
        name: "apple-m4-24gb",
        description: "Apple M4, 24 GB unified memory",
        device_order: APPLE_ORDER,
        basis: Basis::Fixed {
            memory_gb: 24.0,
            precision: Precision::F32,
        },
        batch_size: Some(32),
        loader_threads: 2,
        jobs: 1,
    },
    Builtin {
        name: "apple-m4-32gb",
        description: "Apple M4, 32 GB unified memory",
        device_order: APPLE_ORDER,
        basis: Basis::Fixed {
            memory_gb: 32.0,
            precision: Precision::F32,
        },
        batch_size: Some(64),
        loader_threads: 2,
        jobs: 1,
    },
    Builtin {
        name: "apple-m5-32gb",
        description: "Apple M5, 32 GB unified memory",
        device_order: APPLE_ORDER,
        basis: Basis::Fixed {
            memory_gb: 32.0,
            precision: Precision::F32,
        },
        batch_size: Some(64),
        loader_threads: 2,
        jobs: 1,
    },
    Builtin {
        // f32: mixed precision on Metal has not been measured or checked against the CPU.
        name: "apple-silicon",
        description: "Apple silicon through Metal; unified memory is the machine's RAM",
        device_order: APPLE_ORDER,
        basis: Basis::Unified,
        batch_size: None,
        loader_threads: 2,
        jobs: 1,
    },
    Builtin {
        name: "cpu",
        description: "No GPU: burn's CPU backend; memory is this machine's RAM",
        device_order: &[DeviceKind::Cpu],
        basis: Basis::Ram,
        batch_size: Some(16),
        loader_threads: 1,
        jobs: 1,
    },
    Builtin {
        name: "gpu",
        description: "Any other GPU through Vulkan",
        device_order: GPU_ORDER,
        basis: Basis::Family {
            vendor: None,
            fallback_gb: 8.0,
        },
        batch_size: None,
        loader_threads: 2,
        jobs: 1,
    },
    Builtin {
        name: "intel",
        description: "Intel GPU through Vulkan",
        device_order: GPU_ORDER,
        basis: Basis::Family {
            vendor: Some(Vendor::Intel),
            fallback_gb: 8.0,
        },
        batch_size: None,
        loader_threads: 2,
        jobs: 1,
    },
    Builtin {
        name: "nvidia",
        description: "NVIDIA GPU through Vulkan; memory from the NVIDIA driver",
        device_order: GPU_ORDER,
        basis: Basis::Family {
            vendor: Some(Vendor::Nvidia),
            fallback_gb: 24.0,
        },
        batch_size: None,
        loader_threads: 4,
        // One worker keeps a GPU busy: two on one H100 trained a sweep no faster
        // (docs/benchmarks.md); `--jobs N` spreads workers over several GPUs.
        jobs: 1,
    },
    Builtin {
        name: "nvidia-h100-80gb",
        // f16 mixed precision trains 2.3 times as fast there (374k against 161k tokens/s for
        // shakespeare-char, burn 0.23) with the loss of f32 (docs/benchmarks.md, the precision
        // check).
        description: "One NVIDIA H100, 80 GB (through Vulkan, f16 mixed precision; measured)",
        device_order: GPU_ORDER,
        basis: Basis::Fixed {
            memory_gb: 80.0,
            precision: Precision::F16,
        },
        batch_size: Some(64),
        loader_threads: 4,
        jobs: 1,
    },
    Builtin {
        name: "nvidia-h200",
        description: "One NVIDIA H200, 141 GB (through Vulkan, f16 mixed precision; checked against the CPU)",
        device_order: GPU_ORDER,
        basis: Basis::Fixed {
            memory_gb: 141.0,
            precision: Precision::F16,
        },
        batch_size: Some(64),
        loader_threads: 4,
        jobs: 1,
    },
];

/// Sequences per step a GPU with this much memory takes by default: nanoGPT's 64 where
/// there is room (the 24 GB and 32 GB Macs we measured trained at 32 and 64).
fn batch_for(memory_gb: f64) -> u32 {
    if memory_gb < 8.0 {
        16
    } else if memory_gb < 28.0 {
        32
    } else {
        64
    }
}

/// The precision a GPU trains in by default: f16 mixed precision where its shaders have f16
/// arithmetic (the products then run on tensor or matrix cores where it has cooperative
/// matrices; f16 without them was still 1.3× f32 on an H100 through WGSL), else f32.
fn precision_for(gpu: &Gpu) -> Precision {
    if gpu.shader_f16 {
        Precision::F16
    } else {
        Precision::F32
    }
}

/// The best hardware GPU of a vendor (any vendor for `None`).
fn gpu_of(machine: &Machine, vendor: Option<Vendor>) -> Option<&Gpu> {
    machine
        .hardware_gpus()
        .into_iter()
        .find(|g| vendor.is_none_or(|v| g.vendor == v))
}

/// Names of the built-in profiles.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTINS.iter().map(|b| b.name).collect()
}

fn builtin(name: &str, machine: &Machine) -> Option<HardwareProfile> {
    let b = BUILTINS.iter().find(|b| b.name == name)?;
    let (memory_gb, precision) = match b.basis {
        Basis::Fixed {
            memory_gb,
            precision,
        } => (memory_gb, precision),
        Basis::Ram | Basis::Unified => (machine.ram_gb, Precision::F32),
        Basis::Family {
            vendor,
            fallback_gb,
        } => match gpu_of(machine, vendor) {
            Some(gpu) => (gpu.memory_gb.unwrap_or(fallback_gb), precision_for(gpu)),
            None => (fallback_gb, Precision::F32),
        },
    };
    Some(HardwareProfile {
        name: b.name.into(),
        description: b.description.into(),
        device_order: b.device_order.to_vec(),
        memory_gb,
        memory_budget_gb: round1(memory_gb * DEFAULT_BUDGET_SHARE),
        batch_size: b.batch_size.unwrap_or_else(|| batch_for(memory_gb)),
        grad_accum: 1,
        precision,
        loader_threads: b.loader_threads,
        jobs: b.jobs,
    })
}

/// The built-in profile `auto` stands for on this machine, and why: the family of its best
/// hardware GPU (a measured model's own profile where we have one), else the CPU.
pub fn auto(machine: &Machine) -> (&'static str, String) {
    if let Some(gpu) = machine.primary_gpu() {
        let name = match gpu.vendor {
            Vendor::Nvidia if gpu.name.contains("H100") => "nvidia-h100-80gb",
            Vendor::Nvidia if gpu.name.contains("H200") => "nvidia-h200",
            Vendor::Nvidia => "nvidia",
            Vendor::Amd => "amd",
            Vendor::Intel => "intel",
            Vendor::Apple => "apple-silicon",
            Vendor::Other => "gpu",
        };
        let memory = match gpu.memory_gb {
            Some(gb) => format!("{gb} GB from {}", gpu.memory_source),
            None => "memory unknown".to_string(),
        };
        let f16 = match (gpu.shader_f16, gpu.cooperative_matrix) {
            (true, true) => "f16 shaders and cooperative matrices",
            (true, false) => "f16 shaders, no cooperative matrices",
            (false, _) => "no f16 shaders",
        };
        let others = machine.hardware_gpus().len() - 1;
        let more = if others > 0 {
            format!("; {others} more GPU(s) for --jobs")
        } else {
            String::new()
        };
        let kind = match gpu.kind {
            GpuType::Discrete => "discrete",
            GpuType::Integrated => "integrated",
            GpuType::Virtual => "virtual",
            GpuType::Software => "software",
            GpuType::Other => "other",
        };
        return (
            name,
            format!(
                "{} ({kind} {}, driver {}), {memory}, {f16}{more}",
                gpu.name,
                gpu.api,
                if gpu.driver_info.is_empty() {
                    gpu.driver.clone()
                } else {
                    format!("{} {}", gpu.driver, gpu.driver_info)
                }
            ),
        );
    }
    if machine.os == "macos" && machine.arch == "aarch64" {
        return (
            "apple-silicon",
            format!(
                "Apple silicon ({}), {} GB RAM; Metal found no adapter",
                machine.cpu, machine.ram_gb
            ),
        );
    }
    let software: Vec<&str> = machine
        .gpus
        .iter()
        .filter(|g| !g.is_hardware())
        .map(|g| g.name.as_str())
        .collect();
    let why = if software.is_empty() {
        format!("no GPU found; {} GB RAM", machine.ram_gb)
    } else {
        format!(
            "only software GPUs found ({}), slower than the CPU backend; {} GB RAM",
            software.join(", "),
            machine.ram_gb
        )
    };
    ("cpu", why)
}

/// Every profile a manifest can name: built-ins, overridden or extended by its `[profiles]`.
pub fn all(
    defs: &BTreeMap<String, ProfileDef>,
    machine: &Machine,
) -> Result<Vec<HardwareProfile>, ProfileError> {
    let mut out: Vec<HardwareProfile> = Vec::new();
    for name in builtin_names() {
        out.push(match defs.get(name) {
            Some(def) => apply(name, def, machine)?,
            None => builtin(name, machine).expect("listed built-in"),
        });
    }
    for (name, def) in defs {
        if builtin(name, machine).is_none() {
            out.push(apply(name, def, machine)?);
        }
    }
    Ok(out)
}

/// A problem with a `[profiles.NAME]` table.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("profile `{profile}` extends `{extends}`, which is not a built-in profile")]
pub struct ProfileError {
    pub profile: String,
    pub extends: String,
}

fn apply(name: &str, def: &ProfileDef, machine: &Machine) -> Result<HardwareProfile, ProfileError> {
    let base_name = def.extends.clone().unwrap_or_else(|| {
        if builtin(name, machine).is_some() {
            name.to_string()
        } else {
            "cpu".to_string()
        }
    });
    let mut p = builtin(&base_name, machine).ok_or_else(|| ProfileError {
        profile: name.into(),
        extends: base_name.clone(),
    })?;
    p.name = name.into();
    if let Some(d) = &def.description {
        p.description = d.clone();
    } else if base_name != name {
        p.description = format!("{} (from {base_name})", p.description);
    }
    if let Some(order) = &def.device_order {
        p.device_order = order.clone();
    }
    if let Some(mem) = def.memory_gb {
        p.memory_gb = mem;
        p.memory_budget_gb = round1(mem * DEFAULT_BUDGET_SHARE);
    }
    if let Some(budget) = def.memory_budget_gb {
        p.memory_budget_gb = budget;
    }
    if let Some(b) = def.batch_size {
        p.batch_size = b;
    }
    if let Some(a) = def.grad_accum {
        p.grad_accum = a;
    }
    if let Some(prec) = def.precision {
        p.precision = prec;
    }
    if let Some(t) = def.loader_threads {
        p.loader_threads = t;
    }
    if let Some(j) = def.jobs {
        p.jobs = j;
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::super::machine::recorded::{gpu, h200};
    use super::*;

    fn machine(os: &str, cpu: &str, ram: f64, gpus: Vec<Gpu>) -> Machine {
        Machine {
            os: os.into(),
            arch: if os == "macos" {
                "aarch64".into()
            } else {
                "x86_64".into()
            },
            cpu: cpu.into(),
            cores: 8,
            ram_gb: ram,
            gpus,
        }
    }

    fn with_memory(mut g: Gpu, gb: f64, source: &str) -> Gpu {
        g.memory_gb = Some(gb);
        g.memory_source = source.into();
        g
    }

    fn profile(m: &Machine) -> HardwareProfile {
        let name = auto(m).0;
        builtin(name, m).unwrap()
    }

    /// Adapters as real drivers describe them (wgpu 30's `AdapterInfo`): name, vendor id,
    /// type, driver and driver info, shader-f16 and cooperative matrices.
    #[test]
    fn auto_derives_the_profile_from_what_the_adapter_and_driver_say() {
        let smi = "the NVIDIA driver (nvidia-smi)";
        let cases: Vec<(Gpu, f64, &str, u32, Precision)> = vec![
            // The box of the issue: an H200 got the CPU profile by name matching.
            (
                with_memory(h200("0000:18:00.0"), 150.8, smi),
                128.0,
                "nvidia-h200",
                64,
                Precision::F16,
            ),
            (
                with_memory(
                    gpu(
                        "NVIDIA H100 80GB HBM3",
                        0x10de,
                        GpuType::Discrete,
                        "vulkan",
                        ("NVIDIA", "570.86.15"),
                        true,
                        true,
                    ),
                    85.0,
                    smi,
                ),
                2000.0,
                "nvidia-h100-80gb",
                64,
                Precision::F16,
            ),
            (
                with_memory(
                    gpu(
                        "NVIDIA A100-SXM4-40GB",
                        0x10de,
                        GpuType::Discrete,
                        "vulkan",
                        ("NVIDIA", "550.54.15"),
                        true,
                        true,
                    ),
                    42.9,
                    smi,
                ),
                256.0,
                "nvidia",
                64,
                Precision::F16,
            ),
            (
                with_memory(
                    gpu(
                        "NVIDIA L4",
                        0x10de,
                        GpuType::Discrete,
                        "vulkan",
                        ("NVIDIA", "535.161.08"),
                        true,
                        true,
                    ),
                    24.0,
                    smi,
                ),
                64.0,
                "nvidia",
                32,
                Precision::F16,
            ),
            (
                with_memory(
                    gpu(
                        "NVIDIA GeForce RTX 4090",
                        0x10de,
                        GpuType::Discrete,
                        "vulkan",
                        ("NVIDIA", "560.35.03"),
                        true,
                        true,
                    ),
                    25.8,
                    smi,
                ),
                64.0,
                "nvidia",
                32,
                Precision::F16,
            ),
            (
                with_memory(
                    gpu(
                        "AMD Radeon RX 7900 XTX (RADV NAVI31)",
                        0x1002,
                        GpuType::Discrete,
                        "vulkan",
                        ("radv", "Mesa 24.2.8"),
                        true,
                        true,
                    ),
                    25.8,
                    "the amdgpu kernel driver (sysfs mem_info_vram_total)",
                ),
                64.0,
                "amd",
                32,
                Precision::F16,
            ),
            (
                with_memory(
                    gpu(
                        "AMD Instinct MI300X (RADV GFX942)",
                        0x1002,
                        GpuType::Discrete,
                        "vulkan",
                        ("radv", "Mesa 25.0.7"),
                        true,
                        false,
                    ),
                    206.2,
                    "the amdgpu kernel driver (sysfs mem_info_vram_total)",
                ),
                512.0,
                "amd",
                64,
                Precision::F16,
            ),
            (
                with_memory(
                    gpu(
                        "Intel(R) Arc(tm) A770 Graphics (DG2)",
                        0x8086,
                        GpuType::Discrete,
                        "vulkan",
                        ("Intel open-source Mesa driver", "Mesa 24.0.5"),
                        true,
                        true,
                    ),
                    2.1,
                    "the adapter's largest buffer (a lower bound: the driver gave no figure)",
                ),
                32.0,
                "intel",
                16,
                Precision::F16,
            ),
            (
                with_memory(
                    gpu(
                        "Intel(R) UHD Graphics 620 (KBL GT2)",
                        0x8086,
                        GpuType::Integrated,
                        "vulkan",
                        ("Intel open-source Mesa driver", "Mesa 22.3.6"),
                        false,
                        false,
                    ),
                    16.0,
                    "shared with the CPU (the machine's RAM)",
                ),
                16.0,
                "intel",
                32,
                Precision::F32,
            ),
            (
                with_memory(
                    gpu(
                        "Apple M4 Pro",
                        0,
                        GpuType::Integrated,
                        "metal",
                        ("", ""),
                        true,
                        false,
                    ),
                    48.0,
                    "unified memory (the machine's RAM)",
                ),
                48.0,
                "apple-silicon",
                64,
                Precision::F32,
            ),
        ];
        for (g, ram, name, batch, precision) in cases {
            let os = if g.api == "metal" { "macos" } else { "linux" };
            let m = machine(os, "cpu", ram, vec![g.clone()]);
            let p = profile(&m);
            assert_eq!(
                (p.name.as_str(), p.batch_size, p.precision),
                (name, batch, precision),
                "{}",
                g.name
            );
            assert_ne!(p.device_order[0], DeviceKind::Cpu, "{}", g.name);
        }
    }

    #[test]
    fn software_adapters_leave_the_cpu_profile_and_say_why() {
        let lavapipe = gpu(
            "llvmpipe (LLVM 15.0.6, 256 bits)",
            0x10005,
            GpuType::Software,
            "vulkan",
            ("llvmpipe", "Mesa 22.3.6 (LLVM 15.0.6)"),
            true,
            false,
        );
        let (name, why) = auto(&machine("linux", "EPYC", 24.0, vec![lavapipe]));
        assert_eq!(name, "cpu");
        assert!(why.contains("only software GPUs found (llvmpipe"), "{why}");
        assert_eq!(auto(&machine("linux", "EPYC", 24.0, vec![])).0, "cpu");
    }

    #[test]
    fn the_family_takes_the_best_gpu_and_counts_the_others() {
        let smi = "the NVIDIA driver (nvidia-smi)";
        let m = machine(
            "linux",
            "Xeon",
            256.0,
            vec![
                with_memory(h200("0000:18:00.0"), 150.8, smi),
                with_memory(h200("0000:2a:00.0"), 150.8, smi),
            ],
        );
        let (name, why) = auto(&m);
        assert_eq!(name, "nvidia-h200");
        assert!(why.contains("1 more GPU(s) for --jobs"), "{why}");
        // A named family on a machine without that vendor's GPU: its stated fallback.
        let amd = builtin("amd", &m).unwrap();
        assert_eq!((amd.memory_gb, amd.precision), (16.0, Precision::F32));
        let nvidia = builtin("nvidia", &m).unwrap();
        assert_eq!((nvidia.memory_gb, nvidia.batch_size), (150.8, 64));
    }

    #[test]
    fn budget_defaults_to_three_quarters_of_memory() {
        let m = machine("linux", "EPYC", 24.0, vec![]);
        let profiles = all(&BTreeMap::new(), &m).unwrap();
        let cpu = profiles.iter().find(|p| p.name == "cpu").unwrap();
        assert_eq!(cpu.memory_budget_gb, 18.0);
        let m4 = profiles.iter().find(|p| p.name == "apple-m4-32gb").unwrap();
        assert_eq!(m4.memory_budget_gb, 24.0);
    }

    #[test]
    fn manifest_profiles_override_and_extend() {
        let m = machine("linux", "EPYC", 24.0, vec![]);
        let mut defs = BTreeMap::new();
        defs.insert(
            "apple-m4-24gb".to_string(),
            ProfileDef {
                batch_size: Some(8),
                ..Default::default()
            },
        );
        defs.insert(
            "lab".to_string(),
            ProfileDef {
                extends: Some("nvidia-h100-80gb".into()),
                memory_gb: Some(40.0),
                ..Default::default()
            },
        );
        let profiles = all(&defs, &m).unwrap();
        let m4 = profiles.iter().find(|p| p.name == "apple-m4-24gb").unwrap();
        assert_eq!((m4.batch_size, m4.memory_budget_gb), (8, 18.0));
        let lab = profiles.iter().find(|p| p.name == "lab").unwrap();
        assert_eq!(
            (lab.memory_budget_gb, lab.device_order[0]),
            (30.0, DeviceKind::Vulkan)
        );
        defs.insert(
            "bad".to_string(),
            ProfileDef {
                extends: Some("tpu".into()),
                ..Default::default()
            },
        );
        assert_eq!(all(&defs, &m).unwrap_err().extends, "tpu");
    }
}
