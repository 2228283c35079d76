//! Resource caps: a memory cap enforced through wasmer's tunables, and a CPU
//! cap per batch enforced through the metering middleware.

use std::ptr::NonNull;

use wasmer::sys::vm::{VMConfig, VMMemory, VMMemoryDefinition, VMTable, VMTableDefinition};
use wasmer::sys::{BaseTunables, Tunables};
use wasmer::{MemoryError, MemoryStyle, MemoryType, Pages, TableStyle, TableType, WASM_PAGE_SIZE};

/// Limits every module run by an engine is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most linear memory a module may have, in bytes.
    pub memory_bytes: u64,
    /// Fuel (roughly, WebAssembly instructions) a module may use on one
    /// batch, and on its setup and init.
    pub fuel_per_batch: u64,
}

impl Limits {
    /// 256 MiB of memory.
    pub const DEFAULT_MEMORY_BYTES: u64 = 256 << 20;
    /// About 2 to 5 seconds of CPU on today's machines.
    pub const DEFAULT_FUEL_PER_BATCH: u64 = 10_000_000_000;

    pub(crate) fn memory_pages(&self) -> Pages {
        Pages((self.memory_bytes / WASM_PAGE_SIZE as u64).min(u32::MAX as u64) as u32)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits { memory_bytes: Self::DEFAULT_MEMORY_BYTES, fuel_per_batch: Self::DEFAULT_FUEL_PER_BATCH }
    }
}

/// Tunables that cap every memory at a number of pages, so `memory.grow`
/// past the cap fails inside the module instead of taking host memory.
pub(crate) struct CappedTunables {
    base: BaseTunables,
    max_pages: Pages,
}

impl CappedTunables {
    pub(crate) fn new(base: BaseTunables, max_pages: Pages) -> Self {
        CappedTunables { base, max_pages }
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
        self.base.create_host_table(ty, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        // SAFETY: forwarded unchanged from our caller, who upholds the contract.
        unsafe { self.base.create_vm_table(ty, style, vm_definition_location) }
    }

    fn vmconfig(&self) -> &VMConfig {
        self.base.vmconfig()
    }
}
