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

/// What was detected about this machine.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Machine {
    pub os: String,
    pub arch: String,
    pub cpu: String,
    pub cores: usize,
    pub ram_gb: f64,
    /// An NVIDIA GPU's name and memory in GB, where the driver reports one.
    pub nvidia_gpu: Option<(String, f64)>,
}

impl Machine {
    pub fn detect() -> Machine {
        use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};
        let sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_memory(MemoryRefreshKind::nothing().with_ram())
                .with_cpu(CpuRefreshKind::nothing()),
        )
        .ok();
        let cpus = sys.as_ref().map(|s| s.cpus()).unwrap_or_default();
        let cpu = cpus
            .first()
            .map(|c| c.brand().trim().to_string())
            .unwrap_or_default();
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(cpus.len().max(1));
        Machine {
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            cpu,
            cores,
            ram_gb: round1(sys.as_ref().map(|s| s.total_memory()).unwrap_or(0) as f64 / 1e9),
            nvidia_gpu: nvidia_gpu(),
        }
    }
}

/// Reads the NVIDIA driver's own description, so that detection needs no GPU library.
fn nvidia_gpu() -> Option<(String, f64)> {
    let dir = std::fs::read_dir("/proc/driver/nvidia/gpus").ok()?;
    for entry in dir.flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path().join("information")) else {
            continue;
        };
        let model = info
            .lines()
            .find_map(|l| l.strip_prefix("Model:"))
            .map(|m| m.trim().to_string());
        if let Some(model) = model {
            let memory = if model.contains("H100") || model.contains("80GB") {
                80.0
            } else {
                0.0
            };
            return Some((model, memory));
        }
    }
    None
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

struct Builtin {
    name: &'static str,
    description: &'static str,
    device_order: &'static [DeviceKind],
    memory_gb: Option<f64>,
    batch_size: u32,
    loader_threads: u32,
    jobs: u32,
    precision: Precision,
}

const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "apple-m4-24gb",
        description: "Apple M4, 24 GB unified memory",
        device_order: &[DeviceKind::Metal, DeviceKind::Cpu],
        memory_gb: Some(24.0),
        batch_size: 32,
        precision: Precision::F32,
        jobs: 1,
        loader_threads: 2,
    },
    Builtin {
        name: "apple-m4-32gb",
        description: "Apple M4, 32 GB unified memory",
        device_order: &[DeviceKind::Metal, DeviceKind::Cpu],
        memory_gb: Some(32.0),
        batch_size: 64,
        precision: Precision::F32,
        jobs: 1,
        loader_threads: 2,
    },
    Builtin {
        name: "apple-m5-32gb",
        description: "Apple M5, 32 GB unified memory",
        device_order: &[DeviceKind::Metal, DeviceKind::Cpu],
        memory_gb: Some(32.0),
        batch_size: 64,
        precision: Precision::F32,
        jobs: 1,
        loader_threads: 2,
    },
    Builtin {
        name: "cpu",
        description: "No GPU: burn's CPU backend; memory is this machine's RAM",
        device_order: &[DeviceKind::Cpu],
        memory_gb: None,
        batch_size: 16,
        precision: Precision::F32,
        jobs: 1,
        loader_threads: 1,
    },
    Builtin {
        name: "nvidia-h100-80gb",
        // f16 mixed precision trains 2.3 times as fast there (374k against 161k tokens/s for
        // shakespeare-char, burn 0.23) with the loss of f32 (docs/benchmarks.md, the precision
        // check).
        description: "One NVIDIA H100, 80 GB (through Vulkan, f16 mixed precision)",
        device_order: &[DeviceKind::Vulkan, DeviceKind::Cpu],
        memory_gb: Some(80.0),
        batch_size: 64,
        precision: Precision::F16,
        // One worker keeps the GPU busy: two trained a sweep no faster (docs/benchmarks.md).
        jobs: 1,
        loader_threads: 4,
    },
];

/// Names of the built-in profiles.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTINS.iter().map(|b| b.name).collect()
}

fn builtin(name: &str, machine: &Machine) -> Option<HardwareProfile> {
    let b = BUILTINS.iter().find(|b| b.name == name)?;
    let memory_gb = b.memory_gb.unwrap_or(machine.ram_gb);
    Some(HardwareProfile {
        name: b.name.into(),
        description: b.description.into(),
        device_order: b.device_order.to_vec(),
        memory_gb,
        memory_budget_gb: round1(memory_gb * DEFAULT_BUDGET_SHARE),
        batch_size: b.batch_size,
        grad_accum: 1,
        precision: b.precision,
        loader_threads: b.loader_threads,
        jobs: b.jobs,
    })
}

/// The built-in profile `auto` stands for on this machine, and why.
pub fn auto(machine: &Machine) -> (&'static str, String) {
    if machine.os == "macos" && machine.arch == "aarch64" {
        let name = if machine.cpu.contains("M5") {
            "apple-m5-32gb"
        } else if machine.ram_gb <= 26.0 {
            "apple-m4-24gb"
        } else {
            "apple-m4-32gb"
        };
        return (
            name,
            format!("Apple silicon ({}), {} GB RAM", machine.cpu, machine.ram_gb),
        );
    }
    if let Some((gpu, _)) = &machine.nvidia_gpu
        && gpu.contains("H100")
    {
        return ("nvidia-h100-80gb", format!("NVIDIA GPU: {gpu}"));
    }
    (
        "cpu",
        format!("no supported GPU found; {} GB RAM", machine.ram_gb),
    )
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
    use super::*;

    fn machine(os: &str, cpu: &str, ram: f64, gpu: Option<&str>) -> Machine {
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
            nvidia_gpu: gpu.map(|g| (g.to_string(), 80.0)),
        }
    }

    #[test]
    fn auto_picks_by_ram_and_gpu() {
        assert_eq!(
            auto(&machine("macos", "Apple M4", 24.0, None)).0,
            "apple-m4-24gb"
        );
        assert_eq!(
            auto(&machine("macos", "Apple M4 Pro", 34.4, None)).0,
            "apple-m4-32gb"
        );
        assert_eq!(
            auto(&machine("macos", "Apple M5", 34.4, None)).0,
            "apple-m5-32gb"
        );
        assert_eq!(
            auto(&machine(
                "linux",
                "Xeon",
                2000.0,
                Some("NVIDIA H100 80GB HBM3")
            ))
            .0,
            "nvidia-h100-80gb"
        );
        assert_eq!(auto(&machine("linux", "EPYC", 24.0, None)).0, "cpu");
    }

    #[test]
    fn budget_defaults_to_three_quarters_of_memory() {
        let m = machine("linux", "EPYC", 24.0, None);
        let profiles = all(&BTreeMap::new(), &m).unwrap();
        let cpu = profiles.iter().find(|p| p.name == "cpu").unwrap();
        assert_eq!(cpu.memory_budget_gb, 18.0);
        let m4 = profiles.iter().find(|p| p.name == "apple-m4-32gb").unwrap();
        assert_eq!(m4.memory_budget_gb, 24.0);
    }

    #[test]
    fn manifest_profiles_override_and_extend() {
        let m = machine("linux", "EPYC", 24.0, None);
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
