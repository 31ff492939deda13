//! What this machine is: CPU, RAM, and each GPU as its adapter and driver describe it (vendor,
//! type, memory and where that figure came from, f16 and cooperative matrices), so that
//! profiles are chosen by capability rather than by model name.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// PCI vendor ids, as Vulkan reports them.
const NVIDIA: u32 = 0x10de;
const AMD: u32 = 0x1002;
const AMD_ALT: u32 = 0x1022;
const INTEL: u32 = 0x8086;
const APPLE: u32 = 0x106b;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    Nvidia,
    Amd,
    Intel,
    Apple,
    Other,
}

impl Vendor {
    /// From the adapter's vendor id, or its name where the API gives no PCI id (Metal).
    pub fn of(vendor_id: u32, name: &str) -> Vendor {
        match vendor_id & 0xffff {
            NVIDIA => Vendor::Nvidia,
            AMD | AMD_ALT => Vendor::Amd,
            INTEL => Vendor::Intel,
            APPLE => Vendor::Apple,
            _ if name.starts_with("Apple ") => Vendor::Apple,
            _ => Vendor::Other,
        }
    }
}

/// The adapter's kind, as the driver reports it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GpuType {
    Discrete,
    Integrated,
    Virtual,
    /// A software rasteriser such as lavapipe: a GPU in name only.
    Software,
    Other,
}

/// One GPU adapter.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Gpu {
    /// The adapter's own name, e.g. "NVIDIA H200".
    pub name: String,
    pub vendor: Vendor,
    pub vendor_id: u32,
    pub device_id: u32,
    #[serde(rename = "type")]
    pub kind: GpuType,
    /// `vulkan` or `metal`.
    pub api: String,
    pub driver: String,
    pub driver_info: String,
    /// `domain:bus:device.function`, where the driver gives it.
    pub pci_bus: String,
    /// The shaders have 16-bit float arithmetic.
    pub shader_f16: bool,
    /// Cooperative matrices (tensor cores, matrix cores) are exposed: fast f16 products.
    pub cooperative_matrix: bool,
    /// The adapter's largest buffer, in GB: a lower bound of its memory, used only when
    /// nothing better is known.
    pub max_buffer_gb: f64,
    /// Device memory in GB, where known.
    pub memory_gb: Option<f64>,
    /// Where `memory_gb` came from.
    pub memory_source: String,
}

impl Gpu {
    pub fn is_hardware(&self) -> bool {
        self.kind != GpuType::Software
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
    /// The GPUs wgpu found (software adapters too), in its order.
    pub gpus: Vec<Gpu>,
}

impl Machine {
    /// CPU and RAM, without looking for GPUs (see [`Machine::with_gpus`]).
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
            gpus: Vec::new(),
        }
    }

    /// Adds the adapters wgpu found, with their memory from the drivers' own figures.
    pub fn with_gpus(mut self, mut gpus: Vec<Gpu>) -> Machine {
        // Only where there is an NVIDIA GPU: planning runs this, and a process start is not free.
        let smi = gpus
            .iter()
            .any(|g| g.vendor == Vendor::Nvidia)
            .then(nvidia_smi)
            .flatten();
        let sources = MemorySources {
            nvidia_smi: smi.as_deref(),
            sysfs: Path::new("/sys/bus/pci/devices"),
            ram_gb: self.ram_gb,
        };
        for gpu in &mut gpus {
            let (memory, source) = sources.memory(gpu);
            gpu.memory_gb = memory;
            gpu.memory_source = source;
        }
        self.gpus = gpus;
        self
    }

    /// The hardware GPUs, best first: discrete before integrated, then by memory; wgpu's
    /// order breaks ties (so GPU 0 stays GPU 0 on a box of equal cards).
    pub fn hardware_gpus(&self) -> Vec<&Gpu> {
        let mut found: Vec<&Gpu> = self.gpus.iter().filter(|g| g.is_hardware()).collect();
        let rank = |g: &Gpu| match g.kind {
            GpuType::Discrete => 0,
            GpuType::Integrated => 1,
            _ => 2,
        };
        found.sort_by(|a, b| {
            rank(a).cmp(&rank(b)).then(
                b.memory_gb
                    .unwrap_or(0.0)
                    .total_cmp(&a.memory_gb.unwrap_or(0.0)),
            )
        });
        found
    }

    /// The GPU `auto` plans for.
    pub fn primary_gpu(&self) -> Option<&Gpu> {
        self.hardware_gpus().into_iter().next()
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `nvidia-smi`'s figures: one CSV line a GPU (bus id, name, total memory in MiB).
fn nvidia_smi() -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=pci.bus_id,name,memory.total",
            "--format=csv,noheader,nounits",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A PCI address without its domain's leading zeros, lower case: nvidia-smi writes
/// `00000000:18:00.0`, Vulkan `0000:18:00.0`.
fn pci_key(bus: &str) -> Option<String> {
    let bus = bus.trim().to_ascii_lowercase();
    let (domain, rest) = bus.split_once(':')?;
    let domain = u32::from_str_radix(domain, 16).ok()?;
    rest.contains(':').then(|| format!("{domain:x}:{rest}"))
}

/// One row of `nvidia-smi --query-gpu=pci.bus_id,name,memory.total`.
#[derive(Debug, Clone, PartialEq)]
pub struct SmiRow {
    pub bus: String,
    pub name: String,
    pub mib: f64,
}

pub fn parse_nvidia_smi(text: &str) -> Vec<SmiRow> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split(',').map(str::trim);
            let bus = parts.next()?.to_string();
            let name = parts.next()?.to_string();
            let mib = parts.next()?.parse::<f64>().ok()?;
            Some(SmiRow { bus, name, mib })
        })
        .collect()
}

/// Where GPU memory figures are read from (a test points them at recorded ones).
pub struct MemorySources<'a> {
    pub nvidia_smi: Option<&'a str>,
    /// `/sys/bus/pci/devices`: AMD's kernel driver gives `mem_info_vram_total` there.
    pub sysfs: &'a Path,
    pub ram_gb: f64,
}

impl MemorySources<'_> {
    /// A GPU's memory in GB and where the figure came from.
    pub fn memory(&self, gpu: &Gpu) -> (Option<f64>, String) {
        if gpu.vendor == Vendor::Nvidia
            && let Some(text) = self.nvidia_smi
        {
            let rows = parse_nvidia_smi(text);
            let by_bus = pci_key(&gpu.pci_bus).and_then(|key| {
                rows.iter()
                    .find(|r| pci_key(&r.bus).as_deref() == Some(&key))
            });
            // Without a bus id, a name that only one card has still identifies it.
            let by_name = || {
                let same: Vec<&SmiRow> = rows.iter().filter(|r| r.name == gpu.name).collect();
                (same.len() == 1).then(|| same[0])
            };
            if let Some(row) = by_bus.or_else(by_name) {
                return (
                    Some(round1(row.mib * 1048576.0 / 1e9)),
                    "the NVIDIA driver (nvidia-smi)".into(),
                );
            }
        }
        if gpu.vendor == Vendor::Amd
            && !gpu.pci_bus.is_empty()
            && let Some(bytes) =
                read_number(&self.sysfs.join(&gpu.pci_bus).join("mem_info_vram_total"))
        {
            return (
                Some(round1(bytes / 1e9)),
                "the amdgpu kernel driver (sysfs mem_info_vram_total)".into(),
            );
        }
        if gpu.vendor == Vendor::Apple || gpu.kind == GpuType::Integrated {
            return (
                Some(self.ram_gb),
                if gpu.vendor == Vendor::Apple {
                    "unified memory (the machine's RAM)".into()
                } else {
                    "shared with the CPU (the machine's RAM)".into()
                },
            );
        }
        if gpu.max_buffer_gb > 0.0 {
            return (
                Some(round1(gpu.max_buffer_gb)),
                "the adapter's largest buffer (a lower bound: the driver gave no figure)".into(),
            );
        }
        (None, "no figure from the driver or the adapter".into())
    }
}

fn read_number(path: &PathBuf) -> Option<f64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
pub(crate) mod recorded {
    //! Adapters as wgpu 30 describes real GPUs (names, ids, driver strings and bus ids as
    //! recorded from their drivers), for the profile tests.
    use super::*;

    pub fn gpu(
        name: &str,
        vendor_id: u32,
        kind: GpuType,
        api: &str,
        (driver, driver_info): (&str, &str),
        f16: bool,
        coop: bool,
    ) -> Gpu {
        Gpu {
            name: name.into(),
            vendor: Vendor::of(vendor_id, name),
            vendor_id,
            device_id: 0,
            kind,
            api: api.into(),
            driver: driver.into(),
            driver_info: driver_info.into(),
            pci_bus: String::new(),
            shader_f16: f16,
            cooperative_matrix: coop,
            max_buffer_gb: 2.1,
            memory_gb: None,
            memory_source: String::new(),
        }
    }

    pub fn h200(bus: &str) -> Gpu {
        Gpu {
            device_id: 0x2335,
            pci_bus: bus.into(),
            ..gpu(
                "NVIDIA H200",
                NVIDIA,
                GpuType::Discrete,
                "vulkan",
                ("NVIDIA", "580.159.04"),
                true,
                true,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::recorded::*;
    use super::*;

    const SMI: &str =
        "00000000:18:00.0, NVIDIA H200, 143771\n00000000:2A:00.0, NVIDIA H200, 143771\n";

    #[test]
    fn nvidia_memory_comes_from_the_driver_by_bus_id() {
        let sources = MemorySources {
            nvidia_smi: Some(SMI),
            sysfs: Path::new("/nonexistent"),
            ram_gb: 128.0,
        };
        let (mem, source) = sources.memory(&h200("0000:2a:00.0"));
        assert_eq!(mem, Some(150.8));
        assert!(source.contains("nvidia-smi"), "{source}");
        // Two cards of one name and no bus id: no guess, the adapter's limit instead.
        let (mem, source) = sources.memory(&h200(""));
        assert_eq!(mem, Some(2.1));
        assert!(source.contains("lower bound"), "{source}");
    }

    #[test]
    fn amd_memory_comes_from_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("0000:03:00.0");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("mem_info_vram_total"), "25753026560\n").unwrap();
        let mut gpu = gpu(
            "AMD Radeon RX 7900 XTX (RADV NAVI31)",
            AMD,
            GpuType::Discrete,
            "vulkan",
            ("radv", "Mesa 24.2.8"),
            true,
            true,
        );
        gpu.pci_bus = "0000:03:00.0".into();
        let sources = MemorySources {
            nvidia_smi: None,
            sysfs: dir.path(),
            ram_gb: 64.0,
        };
        assert_eq!(sources.memory(&gpu).0, Some(25.8));
    }

    #[test]
    fn pci_addresses_match_across_spellings() {
        assert_eq!(pci_key("00000000:2A:00.0"), pci_key("0000:2a:00.0"));
        assert_ne!(pci_key("0000:2b:00.0"), pci_key("0000:2a:00.0"));
        assert_eq!(pci_key("garbage"), None);
    }
}
