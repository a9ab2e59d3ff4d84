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
        self.write_at(buf, 0, data);
    }

    /// Overwrites `buf` from byte `offset` (a multiple of 4) with `data` (queued).
    pub fn write_at<T: bytemuck::Pod>(&self, buf: &wgpu::Buffer, offset: u64, data: &[T]) {
        self.queue.write_buffer(buf, offset, bytemuck::cast_slice(data));
    }

    /// Reads `len` elements of `buf` back to the host, waiting for the device to finish.
    pub fn read<T: bytemuck::Pod>(&self, buf: &wgpu::Buffer, len: usize) -> Result<Vec<T>> {
        self.read_at(buf, 0, len)
    }

    /// Reads `len` elements of `buf` from byte `offset` (a multiple of 4), waiting for the device.
    pub fn read_at<T: bytemuck::Pod>(&self, buf: &wgpu::Buffer, offset: u64, len: usize) -> Result<Vec<T>> {
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
        enc.copy_buffer_to_buffer(buf, offset, &staging, 0, bytes);
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

/// The memory a CPU device can still take from the host, in bytes (Linux), if known: the least of
/// MemAvailable, what the process's cgroup allows beyond its use (containers), and the address
/// space `ulimit -v` leaves (a software driver's allocations fail there, and it may crash rather
/// than report it).
pub fn host_available() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let mem = read("/proc/meminfo").and_then(|s| kib_field(&s, "MemAvailable:"));
    let cgroup = read("/proc/self/cgroup").and_then(|c| cgroup_room(&c, &|p| read(p)));
    let address = read("/proc/self/limits").and_then(|l| address_limit(&l)).map(|limit| {
        let used = read("/proc/self/status").and_then(|s| kib_field(&s, "VmSize:")).unwrap_or(0);
        limit.saturating_sub(used)
    });
    [mem, cgroup, address].into_iter().flatten().min()
}

/// A `Name:   123 kB` field of /proc/meminfo or /proc/self/status, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// The soft "Max address space" of /proc/self/limits in bytes, None when unlimited.
fn address_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max address space"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The memory limit of the process's cgroup less its use, from /proc/self/cgroup (`read` reads a
/// file of /sys/fs/cgroup): v2 (`0::/path`, memory.max) or v1 (`N:memory:/path`,
/// memory.limit_in_bytes). Inside a container the path may be `/`; both it and the named path
/// are tried. None when there is no limit.
fn cgroup_room(cgroups: &str, read: &dyn Fn(&str) -> Option<String>) -> Option<u64> {
    let num = |p: String| read(&p).and_then(|s| s.trim().parse::<u64>().ok());
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_end_matches('/');
        let (dir, limit, usage) = match controllers {
            "" => ("/sys/fs/cgroup", "memory.max", "memory.current"),
            c if c.split(',').any(|c| c == "memory") => {
                ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes")
            }
            _ => continue,
        };
        for base in [format!("{dir}{path}"), dir.to_string()] {
            if let Some(max) = num(format!("{base}/{limit}")) {
                // v1 writes a huge number (about 2^63) for "no limit".
                if max >= 1 << 60 {
                    return None;
                }
                return Some(max.saturating_sub(num(format!("{base}/{usage}")).unwrap_or(0)));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_limits_are_read() {
        assert_eq!(kib_field("MemTotal: 10 kB\nMemAvailable:    2048 kB\n", "MemAvailable:"), Some(2 << 20));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max address space         8192000000           unlimited            bytes\n";
        assert_eq!(address_limit(limits), Some(8_192_000_000));
        assert_eq!(address_limit(&limits.replace("8192000000", "unlimited")), None);
        let files = |p: &str| match p {
            "/sys/fs/cgroup/user.slice/memory.max" => Some("1000\n".to_string()),
            "/sys/fs/cgroup/user.slice/memory.current" => Some("400\n".to_string()),
            "/sys/fs/cgroup/memory/memory.limit_in_bytes" => Some("9223372036854771712".to_string()),
            "/sys/fs/cgroup/memory.max" => Some("max\n".to_string()),
            _ => None,
        };
        assert_eq!(cgroup_room("0::/user.slice\n", &files), Some(600));
        // v1, the named path not visible (a container): its root says "no limit".
        assert_eq!(cgroup_room("4:memory:/docker/abc\n1:cpu:/\n", &files), None);
        // v2 with no limit ("max").
        assert_eq!(cgroup_room("0::/\n", &files), None);
        assert!(host_available().is_none_or(|b| b > 0));
    }
}
