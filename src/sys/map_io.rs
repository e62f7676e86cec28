//! Bulk map I/O: reading, writing and deleting many entries of any map, batched where the map
//! type supports it (a million entries in a few dozen syscalls) and key by key where not.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use anyhow::{bail, Result};
use libbpf_rs::libbpf_sys;
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

/// Batch calls move this many entries per syscall.
const BATCH: usize = 16384;

fn errno(ret: libc::c_int) -> Option<i32> {
    (ret < 0).then(|| -ret)
}

/// Whether a batch call failed because the map type has no batch operations.
fn batch_unsupported(err: i32) -> bool {
    matches!(
        err,
        libc::EOPNOTSUPP | libc::EINVAL | 524 /* ENOTSUPP */
    )
}

/// Every CPU's value of a per-CPU array's element `index`, as bytes (`name` for errors).
pub fn per_cpu_values(map: &MapHandle, index: u32, name: &str) -> Result<Vec<Vec<u8>>> {
    match map.lookup_percpu(&index.to_ne_bytes(), MapFlags::ANY) {
        Ok(Some(values)) => Ok(values),
        Ok(None) => bail!("{name} has no element {index}"),
        Err(err) => Err(anyhow::Error::new(err).context(format!("reading {name}"))),
    }
}

/// Every key of a map (values are not copied).
pub fn keys(map: &MapHandle) -> Result<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    for_each_entry(map, |key, _| keys.push(key.to_vec()))?;
    Ok(keys)
}

/// Every (key, value) of a map, copied (see `for_each_entry`).
pub fn entries(map: &MapHandle) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    for_each_entry(map, |key, value| out.push((key.to_vec(), value.to_vec())))?;
    Ok(out)
}

/// Calls `visit` with every (key, value) of a map, without a copy per entry: batched where the
/// map supports it (a million entries in a few dozen syscalls), else key by key. A per-CPU
/// map's value is every CPU's value in turn, each padded to 8 bytes (the kernel's layout).
pub fn for_each_entry(map: &MapHandle, mut visit: impl FnMut(&[u8], &[u8])) -> Result<()> {
    let ks = map.key_size() as usize;
    let vs = if map.map_type().is_percpu() {
        (map.value_size() as usize).next_multiple_of(8) * libbpf_rs::num_possible_cpus()?
    } else {
        map.value_size() as usize
    };
    let batched = matches!(
        map.map_type(),
        MapType::Hash | MapType::LruHash | MapType::Array | MapType::PercpuArray | MapType::LpmTrie
    );
    if batched {
        let mut keys = vec![0u8; ks * BATCH];
        let mut values = vec![0u8; vs * BATCH];
        // The batch cursor is opaque: a bucket index for hashes, a key for others.
        let mut cursor_in = vec![0u8; ks.max(8)];
        let mut cursor_out = vec![0u8; ks.max(8)];
        let mut first = true;
        let mut seen = 0usize;
        loop {
            let mut count = BATCH as u32;
            let opts = libbpf_sys::bpf_map_batch_opts {
                sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
                ..Default::default()
            };
            // SAFETY: every buffer is as large as count entries (or a cursor) needs.
            let ret = unsafe {
                libbpf_sys::bpf_map_lookup_batch(
                    map.as_fd().as_raw_fd(),
                    if first {
                        std::ptr::null_mut()
                    } else {
                        cursor_in.as_mut_ptr().cast()
                    },
                    cursor_out.as_mut_ptr().cast(),
                    keys.as_mut_ptr().cast(),
                    values.as_mut_ptr().cast(),
                    &mut count,
                    &opts,
                )
            };
            first = false;
            for i in 0..count as usize {
                visit(&keys[i * ks..(i + 1) * ks], &values[i * vs..(i + 1) * vs]);
            }
            seen += count as usize;
            match errno(ret) {
                None => std::mem::swap(&mut cursor_in, &mut cursor_out),
                Some(libc::ENOENT) => return Ok(()),
                Some(err) if seen == 0 && batch_unsupported(err) => break,
                Some(err) => bail!(
                    "reading map {}: {}",
                    map.name().to_string_lossy(),
                    io::Error::from_raw_os_error(err)
                ),
            }
        }
    }
    for key in map.keys() {
        if map.map_type().is_percpu() {
            if let Some(values) = map.lookup_percpu(&key, MapFlags::ANY)? {
                let stride = (map.value_size() as usize).next_multiple_of(8);
                let mut value = Vec::with_capacity(stride * values.len());
                for mut cpu in values {
                    cpu.resize(stride, 0);
                    value.extend(cpu);
                }
                visit(&key, &value);
            }
        } else if let Some(value) = map.lookup(&key, MapFlags::ANY)? {
            visit(&key, &value);
        }
    }
    Ok(())
}

/// A failed write; a full map's error ends with `when_full`, what the user can do about it.
fn write_error(map: &MapHandle, err: libbpf_rs::Error, when_full: &str) -> anyhow::Error {
    if err.kind() == libbpf_rs::ErrorKind::TooBig {
        anyhow::anyhow!(
            "the map {} is full ({} entries): {when_full}",
            map.name().to_string_lossy(),
            map.max_entries()
        )
    } else {
        anyhow::anyhow!("writing map {}: {err}", map.name().to_string_lossy())
    }
}

/// Deletes many keys, ignoring ones already gone: batched where the map supports it.
pub fn delete_many(map: &MapHandle, keys: &[Vec<u8>]) -> Result<()> {
    let mut rest = keys;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(BATCH)];
        let flat: Vec<u8> = chunk.iter().flat_map(|k| k.iter().copied()).collect();
        let mut count = chunk.len() as u32;
        let opts = libbpf_sys::bpf_map_batch_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
            ..Default::default()
        };
        // SAFETY: flat holds count keys.
        let ret = unsafe {
            libbpf_sys::bpf_map_delete_batch(
                map.as_fd().as_raw_fd(),
                flat.as_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        match errno(ret) {
            None => rest = &rest[chunk.len()..],
            // A key already gone (or no batch support): finish key by key.
            Some(err) if err == libc::ENOENT || batch_unsupported(err) => {
                for key in &rest[count as usize..] {
                    match map.delete(key) {
                        Ok(()) => {}
                        Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => {}
                        Err(e) => bail!("deleting from map {}: {e}", map.name().to_string_lossy()),
                    }
                }
                return Ok(());
            }
            Some(err) => bail!(
                "deleting from map {}: {}",
                map.name().to_string_lossy(),
                io::Error::from_raw_os_error(err)
            ),
        }
    }
    Ok(())
}

/// Writes flat keys and values, splitting large writes over the CPUs: a trie takes one lock
/// per update, but copying the batches in runs beside it (300,000 ranges: 0.31 s alone, 0.25 s
/// on two cores here).
pub fn update_flat_parallel(
    map: &MapHandle,
    keys: &[u8],
    values: &[u8],
    when_full: &str,
) -> Result<()> {
    let (ks, vs) = (map.key_size() as usize, map.value_size() as usize);
    let count = keys.len() / ks;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    if threads < 2 || count < 200_000 {
        return update_flat(map, keys, values, when_full);
    }
    let per = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (lo, hi) = (t * per, ((t + 1) * per).min(count));
                let (k, v) = (&keys[lo * ks..hi * ks], &values[lo * vs..hi * vs]);
                scope.spawn(move || update_flat(map, k, v, when_full))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| bail!("a writer thread panicked"))
            })
            .collect::<Result<Vec<()>>>()
            .map(|_| ())
    })
}

/// How many batches in a row may stop with ENOMEM before writing anything, each after a pause
/// twice as long as the last (1 ms, then up to half a second): the allocator's refill takes
/// microseconds, so only a real shortage lasts that long.
const ALLOCATOR_STALLS: u32 = 10;

/// Writes flat keys and values (in the map's key and value sizes) in batches.
pub fn update_flat(map: &MapHandle, keys: &[u8], values: &[u8], when_full: &str) -> Result<()> {
    let (ks, vs) = (map.key_size() as usize, map.value_size() as usize);
    let count = keys.len() / ks;
    let mut done = 0;
    // ENOMEMs in a row that wrote nothing (see below).
    let mut stalls = 0;
    while done < count {
        let n = (count - done).min(BATCH);
        let mut batch = n as u32;
        let opts = libbpf_sys::bpf_map_batch_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
            ..Default::default()
        };
        // SAFETY: the slices hold n keys and n values from `done` on.
        let ret = unsafe {
            libbpf_sys::bpf_map_update_batch(
                map.as_fd().as_raw_fd(),
                keys[done * ks..].as_ptr().cast(),
                values[done * vs..].as_ptr().cast(),
                &mut batch,
                &opts,
            )
        };
        match errno(ret) {
            None => done += n,
            // The elements of an LPM trie (or a hash without prealloc) come from the BPF
            // memory allocator, whose per-CPU cache a batch can run dry on 6.x kernels: it is
            // refilled only after the call (irq_work), so the batch stops with ENOMEM and
            // memory to spare. Keep what it wrote and go on; a real shortage still fails, once
            // a retry after a pause writes nothing either.
            Some(libc::ENOMEM) if stalls < ALLOCATOR_STALLS => {
                done += batch as usize;
                if batch > 0 {
                    stalls = 0;
                } else {
                    std::thread::sleep(std::time::Duration::from_millis(1 << stalls));
                    stalls += 1;
                }
            }
            Some(err) if batch == 0 && batch_unsupported(err) => {
                for i in done..count {
                    map.update(
                        &keys[i * ks..(i + 1) * ks],
                        &values[i * vs..(i + 1) * vs],
                        MapFlags::ANY,
                    )
                    .map_err(|e| write_error(map, e, when_full))?;
                }
                return Ok(());
            }
            Some(err) => {
                return Err(write_error(
                    map,
                    libbpf_rs::Error::from(io::Error::from_raw_os_error(err)),
                    when_full,
                ))
            }
        }
    }
    Ok(())
}

/// Writes many entries: batched where the map supports it, else one by one.
pub fn update_many(map: &MapHandle, entries: &[(Vec<u8>, Vec<u8>)], when_full: &str) -> Result<()> {
    let keys: Vec<u8> = entries
        .iter()
        .flat_map(|(k, _)| k.iter().copied())
        .collect();
    let values: Vec<u8> = entries
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .collect();
    update_flat(map, &keys, &values, when_full)
}

/// The key after `after` (or the first key, for None), as bpf(2)'s get_next_key: after a key
/// the map does not hold comes its first key. None when there is no next key.
pub fn next_key(map: &MapHandle, after: Option<&[u8]>) -> io::Result<Option<Vec<u8>>> {
    let mut next = vec![0u8; map.key_size() as usize];
    let after = after.map_or(std::ptr::null(), |key| key.as_ptr().cast());
    // SAFETY: `after` is null or a key of the map's size; `next` has room for one.
    let ret = unsafe {
        libbpf_sys::bpf_map_get_next_key(map.as_fd().as_raw_fd(), after, next.as_mut_ptr().cast())
    };
    match errno(ret) {
        None => Ok(Some(next)),
        Some(libc::ENOENT) => Ok(None),
        Some(err) => Err(io::Error::from_raw_os_error(err)),
    }
}
