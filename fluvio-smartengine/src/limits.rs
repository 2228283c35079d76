//! Resource caps: a memory cap enforced through wasmer's tunables, a CPU cap
//! per batch enforced through the fuel metering (`fuel.rs`), and a wall-clock cap per
//! call enforced by the watchdog (with [`Metering::Deadline`], the only CPU cap).

use std::ptr::NonNull;
use std::time::Duration;

use crate::StructureLimits;
use wasmer::sys::vm::{VMConfig, VMMemory, VMMemoryDefinition, VMTable, VMTableDefinition};
use wasmer::sys::{BaseTunables, Tunables};
use wasmer::{MemoryError, MemoryStyle, MemoryType, Pages, TableStyle, TableType, WASM_PAGE_SIZE};

/// Limits every module run by an engine is held to, and the bounds of the
/// engine's compiled-module caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most linear memory a module may have, in bytes.
    pub memory_bytes: u64,
    /// Fuel (roughly, WebAssembly instructions) a module may use on one
    /// batch, and on its setup and init.
    pub fuel_per_batch: u64,
    /// Longest one call into a module may run, in wall-clock time, however
    /// much fuel it has left.
    pub call_time: Duration,
    /// Bytes of compiled code the engine keeps cached, in memory (with the
    /// wasm each came from) and again in its disk cache directory; the
    /// least recently used go first.
    pub cache_bytes: u64,
    /// Most modules the engine compiles at the same time; more wait.
    pub concurrent_compilations: usize,
    /// Longest one module may take to compile (waiting for a compile place
    /// not counted).
    pub compile_time: Duration,
    /// Bounds on a module's shape, checked before it is compiled.
    pub structure: StructureLimits,
    /// How a running module is metered: by fuel (the default), or by the
    /// clock alone.
    pub metering: Metering,
    /// The newest answer layout offered to modules of this project's ABI
    /// (docs/abi.md); a module answers in the newest it also speaks. The
    /// default is the newest this engine reads. A module's outputs are the
    /// same in every layout: a lower one runs modules as an engine of an
    /// earlier release did, which the engine benchmark compares.
    pub answer_layout: u32,
}

/// How the engine holds a module to its CPU cap.
///
/// Both stop a module that runs too long, endless loops and recursion
/// included, and both let [`Limits::call_time`] and a cancelled stream
/// stop a call at once. They differ in what is counted, and in what the
/// counting costs the module's own loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Metering {
    /// Every operator pays a unit of fuel, and a batch may spend at most
    /// [`Limits::fuel_per_batch`]: the same module on the same batch always
    /// uses the same fuel, and stops at the same place when it runs out,
    /// whatever the machine or its load ([`EngineError::CpuLimitExceeded`]).
    /// The counting costs about 10% of a module's time
    /// (docs/benchmarks.md).
    ///
    /// [`EngineError::CpuLimitExceeded`]: crate::EngineError::CpuLimitExceeded
    #[default]
    Fuel,
    /// Nothing is counted: the module only looks, where it loops back and
    /// where it calls, whether the watchdog has stopped it. The cap is
    /// [`Limits::call_time`] alone, so where a module stops depends on the
    /// machine, and `fuel_per_batch` is not used. For hosts that run their
    /// own modules and want their time back.
    Deadline,
}

impl Metering {
    /// The name the command-line options use: `fuel` or `deadline`.
    pub fn name(self) -> &'static str {
        match self {
            Metering::Fuel => "fuel",
            Metering::Deadline => "deadline",
        }
    }
}

impl std::str::FromStr for Metering {
    type Err = String;

    fn from_str(name: &str) -> Result<Metering, String> {
        match name {
            "fuel" => Ok(Metering::Fuel),
            "deadline" => Ok(Metering::Deadline),
            other => Err(format!("unknown metering `{other}`: use `fuel` or `deadline`")),
        }
    }
}

impl Limits {
    /// 256 MiB of memory.
    pub const DEFAULT_MEMORY_BYTES: u64 = 256 << 20;
    /// About 2 to 5 seconds of CPU on today's machines.
    pub const DEFAULT_FUEL_PER_BATCH: u64 = 10_000_000_000;
    /// Ten seconds: well above what the default fuel takes, so on a healthy
    /// machine fuel decides, and the clock only stops what fuel misprices.
    pub const DEFAULT_CALL_TIME: Duration = Duration::from_secs(10);
    /// Thirty seconds: real modules compile in well under a few seconds,
    /// and the structural limits keep a module far from this.
    pub const DEFAULT_COMPILE_TIME: Duration = Duration::from_secs(30);
    /// 1 GiB of compiled code: some hundreds of typical modules.
    pub const DEFAULT_CACHE_BYTES: u64 = 1 << 30;

    /// Most entries a module's table may hold: a sixteenth of the memory
    /// cap, counted at [`TABLE_ELEMENT_BYTES`] each, so that memory and table
    /// together stay within 1/16 of the cap. Rust modules use a few hundred.
    pub(crate) fn table_elements(&self) -> u64 {
        self.memory_bytes / 16 / TABLE_ELEMENT_BYTES
    }

    pub(crate) fn memory_pages(&self) -> Pages {
        Pages((self.memory_bytes / WASM_PAGE_SIZE as u64).min(u32::MAX as u64) as u32)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: Self::DEFAULT_MEMORY_BYTES,
            fuel_per_batch: Self::DEFAULT_FUEL_PER_BATCH,
            call_time: Self::DEFAULT_CALL_TIME,
            cache_bytes: Self::DEFAULT_CACHE_BYTES,
            // Compiling is CPU-bound: more at once than cores only queues.
            concurrent_compilations: std::thread::available_parallelism().map_or(2, |n| n.get()),
            compile_time: Self::DEFAULT_COMPILE_TIME,
            structure: StructureLimits::default(),
            metering: Metering::default(),
            answer_layout: smartmodule_abi::abi::NEWEST_ANSWER_LAYOUT,
        }
    }
}

/// Host bytes one table entry takes (a function reference is a pointer).
pub(crate) const TABLE_ELEMENT_BYTES: u64 = 8;

/// Tunables that cap every memory at a number of pages and every table at a
/// number of entries, so `memory.grow` and `table.grow` past the cap fail
/// inside the module instead of taking host memory.
pub(crate) struct CappedTunables {
    base: BaseTunables,
    max_pages: Pages,
    max_table_elements: u32,
}

impl CappedTunables {
    pub(crate) fn new(base: BaseTunables, max_pages: Pages, max_table_elements: u64) -> Self {
        CappedTunables { base, max_pages, max_table_elements: max_table_elements.min(u32::MAX as u64) as u32 }
    }

    fn capped_table(&self, requested: &TableType) -> Result<TableType, String> {
        if requested.minimum > self.max_table_elements {
            return Err(format!(
                "the table's minimum of {} entries is above the cap of {} entries",
                requested.minimum, self.max_table_elements
            ));
        }
        let maximum = requested.maximum.map_or(self.max_table_elements, |max| max.min(self.max_table_elements));
        Ok(TableType { maximum: Some(maximum), ..*requested })
    }

    fn capped(&self, requested: &MemoryType) -> Result<MemoryType, MemoryError> {
        if requested.minimum > self.max_pages {
            return Err(MemoryError::MinimumMemoryTooLarge {
                min_requested: requested.minimum,
                max_allowed: self.max_pages,
            });
        }
        let maximum = requested.maximum.map_or(self.max_pages, |max| max.min(self.max_pages));
        Ok(MemoryType { maximum: Some(maximum), ..*requested })
    }
}

impl Tunables for CappedTunables {
    fn memory_style(&self, memory: &MemoryType) -> MemoryStyle {
        // The style is chosen for the uncapped type so that compiled code is
        // the same whatever the cap; the cap only limits growth.
        self.base.memory_style(memory)
    }

    fn table_style(&self, table: &TableType) -> TableStyle {
        self.base.table_style(table)
    }

    fn create_host_memory(&self, ty: &MemoryType, style: &MemoryStyle) -> Result<VMMemory, MemoryError> {
        let ty = self.capped(ty)?;
        self.base.create_host_memory(&ty, style)
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        let ty = self.capped(ty)?;
        // SAFETY: forwarded unchanged from our caller, who upholds the contract.
        unsafe { self.base.create_vm_memory(&ty, style, vm_definition_location) }
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        let ty = self.capped_table(ty)?;
        self.base.create_host_table(&ty, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        let ty = self.capped_table(ty)?;
        // SAFETY: forwarded from our caller, who upholds the contract; only
        // the table's maximum is lowered.
        unsafe { self.base.create_vm_table(&ty, style, vm_definition_location) }
    }

    fn vmconfig(&self) -> &VMConfig {
        self.base.vmconfig()
    }
}
