use wgpu::util::DeviceExt;

use super::Gpu;
use crate::error::{Error, Result};

const STORAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

impl Gpu {
    /// Refuses a buffer larger than the device can create, naming it and the limit. (Larger
    /// than one binding is fine: dispatches bind ranges of it.)
    pub fn check_size(&self, name: &str, bytes: u64) -> Result<()> {
        let limit = self.max_buffer();
        if bytes > limit {
            return Err(Error::BufferTooLarge { tensor: name.to_string(), bytes, limit });
        }
        Ok(())
    }

    /// Refuses to plan `bytes` of buffers on a CPU device (lavapipe) when the host does not have
    /// that much memory available: such a device allocates lazily and the process would be
    /// killed mid-step instead of getting an error.
    pub fn check_host_memory(&self, what: &str, bytes: u64) -> Result<()> {
        if self.info.device_type != wgpu::DeviceType::Cpu {
            return Ok(());
        }
        let Some(available) = host_available() else { return Ok(()) };
        if bytes > available {
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            let what = format!(
                "{what} ({:.1} MiB planned, {:.1} MiB of host memory available to this CPU device)",
                mib(bytes),
                mib(available)
            );
            return Err(Error::OutOfMemory { what });
        }
        Ok(())
    }

    /// A zeroed f32 storage buffer of `len` elements (at least one, so that it can be bound).
    pub fn zeros(&self, name: &str, len: usize) -> Result<wgpu::Buffer> {
        let bytes = (len.max(1) * 4) as u64;
        self.check_size(name, bytes)?;
        self.scoped(name, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(name),
                size: bytes,
                usage: STORAGE,
                mapped_at_creation: false,
            })
        })
    }

    /// A storage buffer holding `data` (f32, u32 or any plain type).
    pub fn upload<T: bytemuck::Pod>(&self, name: &str, data: &[T]) -> Result<wgpu::Buffer> {
        let mut bytes: Vec<u8> = bytemuck::cast_slice(data).to_vec();
        if bytes.is_empty() {
            bytes.resize(4, 0);
        }
        self.check_size(name, bytes.len() as u64)?;
        self.scoped(name, || {
            self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(name),
                contents: &bytes,
                usage: STORAGE,
            })
        })
    }

    /// A uniform buffer with a kernel's parameters.
    pub fn uniform<T: bytemuck::Pod>(&self, name: &str, params: &T) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(name),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }

    /// Overwrites the start of `buf` with `data` (queued; takes effect before the next submission).
    pub fn write<T: bytemuck::Pod>(&self, buf: &wgpu::Buffer, data: &[T]) {
        self.queue.write_buffer(buf, 0, bytemuck::cast_slice(data));
    }

    /// Reads `len` elements of `buf` back to the host, waiting for the device to finish.
    pub fn read<T: bytemuck::Pod>(&self, buf: &wgpu::Buffer, len: usize) -> Result<Vec<T>> {
        let bytes = (len * std::mem::size_of::<T>()) as u64;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buf, 0, &staging, 0, bytes);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| Error::DeviceLost("buffer mapping was dropped".into()))?
            .map_err(|e| Error::DeviceLost(format!("could not map a buffer for reading: {e}")))?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| Error::DeviceLost(format!("could not read a mapped buffer: {e}")))?;
        let out = bytemuck::cast_slice::<u8, T>(&view).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// Blocks until all submitted work is done.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait { submission_index: None, timeout: None })
            .map_err(|e| Error::DeviceLost(e.to_string()))?;
        self.check_alive()
    }
}

/// MemAvailable of /proc/meminfo in bytes (Linux), if known.
pub fn host_available() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
