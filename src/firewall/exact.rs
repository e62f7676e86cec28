//! The exact-address tables (include/xdpctl.h, bpf/firewall/exact.h): userspace's side. Each list keeps
//! its /32 and /128 rules in two BPF arrays made `BPF_F_MMAPABLE`: buckets of 16-bit tags, and
//! the slots they lead to. xdpctl maps both into its memory and reads and writes them there,
//! with the program's hash and the same claim-and-publish protocol, so a lookup in the program
//! is a few inlined loads, and a million rules load without a syscall each.
//!
//! Writers: xdpctl (rule edits, under the edit lock) and the program (auto-blocked sources, any
//! CPU at any time). A writer claims a free slot with a compare-and-swap of its state, fills it,
//! marks it live, then publishes its tag; a remover (only xdpctl) clears the tag first. The
//! program never removes anything, so xdpctl renews or removes a live slot without a race.
//!
//! In front of the buckets, each list has a presence filter (a Bloom filter in two halves; see
//! include/xdpctl.h): every insert sets the address's bits in both halves before it publishes
//! the tag, and bits are never cleared for one address. Removals leave stale bits; once they
//! add up, xdpctl rebuilds the half the program does not read and switches to it
//! (`FirewallMaps::note_exact_removals`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};

use anyhow::Result;
use libbpf_rs::MapHandle;

use crate::sys::mmap::Mapping;

/// FW_EXACT_LANES: lanes (slots) per bucket.
pub const LANES: usize = crate::abi::FW_EXACT_LANES as usize;
/// FW_EXACT_FILTER_WORDS: 64-bit words of the presence filter per bucket, in each half.
pub const FILTER_WORDS: usize = crate::abi::FW_EXACT_FILTER_WORDS as usize;
/// EXACT_MAX_SAME_TAG: lanes of one bucket that may share a tag.
const MAX_SAME_TAG: u32 = 4;
/// enum fw_exact_state.
const FREE: u32 = crate::abi::FW_EXACT_FREE;
const BUSY: u32 = crate::abi::FW_EXACT_BUSY;
const LIVE_V4: u32 = crate::abi::FW_EXACT_LIVE_V4;
const LIVE_V6: u32 = crate::abi::FW_EXACT_LIVE_V6;
const K1: u64 = 0x9E37_79B9_7F4A_7C15;
const K2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const K3: u64 = 0xFF51_AFD7_ED55_8CCD;

/// Buckets for a table of `rules` addresses: 5/4 of the lanes they need (at that load both of an
/// address's buckets were never full in 5 million simulated inserts), and at least two.
pub fn buckets_for(rules: u32) -> u32 {
    let lanes = u64::from(rules) * 5 / 4;
    lanes
        .div_ceil(LANES as u64)
        .clamp(2, u64::from(u32::MAX) / LANES as u64) as u32
}

/// Entries of each array of a table for `rules` addresses, in the order of
/// `firewall::EXACT_MAPS`: the tags (a bucket each), the slots (a lane each), the filter's
/// two halves (a word each), and the IPv4 elements (a bucket each).
pub fn array_entries(rules: u32) -> [u32; 4] {
    let buckets = buckets_for(rules);
    [
        buckets,
        buckets * LANES as u32,
        buckets * FILTER_WORDS as u32 * 2,
        buckets,
    ]
}

/// FW_EXACT_V4_SLOW and FW_EXACT_V4_HITS: a lane's meta word.
const V4_SLOW: u32 = crate::abi::FW_EXACT_V4_SLOW;
const V4_HITS: u32 = crate::abi::FW_EXACT_V4_HITS;

/// Whether the program must read a rule's slot to know it (its meta word's FW_EXACT_V4_SLOW):
/// it expires, or the program made it (an auto-block, whose reason the drop is counted by).
/// An operator's rule (manual or from a config file) drops as the blocklist either way.
fn is_slow(expires_ns: u64, reason: u32) -> bool {
    expires_ns != 0
        || reason == crate::abi::FW_REASON_RATELIMIT
        || reason == crate::abi::FW_REASON_PREFIX
}

/// struct fw_exact_v4_line, as atomics over the shared memory.
#[repr(C)]
struct V4Line {
    addr: [AtomicU32; LANES / 2],
    meta: [AtomicU32; LANES / 2],
}

/// struct fw_exact_v4: lane l in line l / 8.
#[repr(C)]
struct V4Element {
    lines: [V4Line; 2],
}

impl V4Element {
    fn addr(&self, lane: usize) -> &AtomicU32 {
        &self.lines[lane / 8].addr[lane % 8]
    }

    fn meta(&self, lane: usize) -> &AtomicU32 {
        &self.lines[lane / 8].meta[lane % 8]
    }
}

const _: () =
    assert!(std::mem::size_of::<V4Element>() == std::mem::size_of::<crate::firewall::ExactV4>());

/// An address as the tables key it (struct exact_key in bpf/firewall/exact.h): its bytes as two native
/// words, and the live state of its family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    lo: u64,
    hi: u64,
    state: u32,
}

impl Key {
    pub fn of(addr: IpAddr) -> Key {
        let mut bytes = [0u8; 16];
        let state = match addr {
            IpAddr::V4(a) => {
                bytes[..4].copy_from_slice(&a.octets());
                LIVE_V4
            }
            IpAddr::V6(a) => {
                bytes.copy_from_slice(&a.octets());
                LIVE_V6
            }
        };
        Key {
            lo: u64::from_ne_bytes(bytes[..8].try_into().unwrap()),
            hi: u64::from_ne_bytes(bytes[8..].try_into().unwrap()),
            state,
        }
    }

    pub fn is_v6(&self) -> bool {
        self.state == LIVE_V6
    }

    /// The address's 16 bytes as two words, as the program loads them.
    pub fn words(&self) -> [u64; 2] {
        [self.lo, self.hi]
    }

    pub fn addr(&self) -> IpAddr {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.lo.to_ne_bytes());
        bytes[8..].copy_from_slice(&self.hi.to_ne_bytes());
        if self.state == LIVE_V4 {
            IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
    }
}

/// Where a key may live: its two buckets, and its tag; and its word (in a half) and bits in the
/// presence filter (exact_place in bpf/firewall/exact.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub buckets: [u32; 2],
    pub tag: u16,
    pub filter_word: u32,
    pub filter_bits: u64,
}

impl Place {
    pub fn of(key: &Key, seed: u64, buckets: u32) -> Place {
        let n = u64::from(buckets);
        let mut h = (key.lo ^ seed).wrapping_mul(K1);
        h ^= key.hi ^ u64::from(key.state);
        h = (h ^ (h >> 32)).wrapping_mul(K2);
        h ^= h >> 32;
        let tag = h as u16;
        let g = (h ^ (h >> 29)).wrapping_mul(K3);
        Place {
            buckets: [
                (((h >> 32) * n) >> 32) as u32,
                (((h & 0xffff_ffff) * n) >> 32) as u32,
            ],
            tag: if tag == 0 { 1 } else { tag },
            filter_word: (((g >> 32) * (n * FILTER_WORDS as u64)) >> 32) as u32,
            filter_bits: 1 << (g & 63) | 1 << ((g >> 6) & 63) | 1 << ((g >> 12) & 63),
        }
    }
}

/// The lanes of a lane bit set, lowest first.
fn lanes_in(set: u16) -> impl Iterator<Item = usize> {
    (0..LANES).filter(move |lane| set & (1 << lane) != 0)
}

/// struct fw_exact_slot, as atomics over the shared memory. `reason_generation` is its reason
/// (low 16 bits) and generation (high 16) together.
#[repr(C)]
struct Slot {
    addr: [AtomicU64; 2],
    hits: AtomicU64,
    expires_ns: AtomicU64,
    reason_generation: AtomicU32,
    state: AtomicU32,
}

impl Slot {
    fn generation(&self) -> u16 {
        (self.reason_generation.load(Ordering::Relaxed) >> 16) as u16
    }

    /// Sets the reason and the generation (that of a new rule, or the one there).
    fn set_reason(&self, reason: u16, generation: u16) {
        self.reason_generation.store(
            u32::from(reason) | u32::from(generation) << 16,
            Ordering::Relaxed,
        );
    }
}

// The program's layout (struct fw_exact_slot).
const _: () =
    assert!(std::mem::size_of::<Slot>() == std::mem::size_of::<crate::firewall::ExactSlot>());

/// One rule of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: Key,
    /// The rule's own counter: without the hits CPUs' caches hold (hit_cache::PendingHits).
    pub hits: u64,
    pub expires_ns: u64,
    pub reason: u32,
    /// One more at each new rule in the slot (struct fw_hit_entry).
    pub generation: u16,
}

/// What an insert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    New,
    /// The address was there: its expiry and reason were replaced (hits kept); the old entry.
    Renewed(Entry),
}

/// Both buckets of an address are full.
#[derive(Debug)]
pub struct Full;

/// One list's table, mapped into this process.
pub struct Table {
    tags: Mapping,
    slots: Mapping,
    filter: Mapping,
    v4: Mapping,
    buckets: u32,
    seed: u64,
}

impl Table {
    /// Maps a table's four arrays. `buckets` and `seed` are fw_config's exact_buckets and
    /// exact_seed.
    pub fn open(
        [tags, slots, filter, v4]: [&MapHandle; 4],
        buckets: u32,
        seed: u64,
    ) -> Result<Table> {
        let n = buckets as usize;
        Ok(Table {
            tags: Mapping::of(tags, n, LANES * 2)?,
            slots: Mapping::of(slots, n * LANES, std::mem::size_of::<Slot>())?,
            filter: Mapping::of(filter, n * FILTER_WORDS * 2, 8)?,
            v4: Mapping::of(v4, n, std::mem::size_of::<V4Element>())?,
            buckets,
            seed,
        })
    }

    /// Words in each half of the filter.
    fn filter_words(&self) -> usize {
        self.buckets as usize * FILTER_WORDS
    }

    fn filter_word(&self, half: usize, word: usize) -> &AtomicU64 {
        let index = half * self.filter_words() + word;
        assert!((index + 1) * 8 <= self.filter.len);
        // SAFETY: within the mapping; u64 words, 8-aligned (page-aligned mapping).
        unsafe { &*(self.filter.ptr as *const AtomicU64).add(index) }
    }

    /// Sets a key's bits in one half of the filter.
    fn filter_set(&self, half: usize, place: &Place) {
        self.filter_word(half, place.filter_word as usize)
            .fetch_or(place.filter_bits, Ordering::AcqRel);
    }

    /// Sets a key's bits in both halves of the filter: before its tag is published, so the
    /// program never rules out a key it could find.
    fn filter_add(&self, place: &Place) {
        for half in 0..2 {
            self.filter_set(half, place);
        }
    }

    /// Whether the filter's half `half` may hold the key (false: it is not in the table).
    pub fn filter_may_hold(&self, half: usize, key: &Key) -> bool {
        let place = self.place(key);
        let bits = self
            .filter_word(half, place.filter_word as usize)
            .load(Ordering::Acquire);
        bits & place.filter_bits == place.filter_bits
    }

    /// Builds half `half` of the filter anew from the entries in the table, for the program to
    /// switch to once it is done. Inserts meanwhile set their bits in both halves themselves.
    pub fn build_filter(&self, half: usize) {
        for word in 0..self.filter_words() {
            self.filter_word(half, word).store(0, Ordering::Release);
        }
        self.for_each(|_, entry| self.filter_set(half, &self.place(&entry.key)));
    }

    /// Lanes in the table: the scale of stale filter bits worth a rebuild.
    pub fn capacity(&self) -> usize {
        self.buckets as usize * LANES
    }

    fn tag(&self, bucket: u32, lane: usize) -> &AtomicU16 {
        let index = bucket as usize * LANES + lane;
        assert!(index * 2 < self.tags.len);
        // SAFETY: within the mapping; u16 tags, 2-aligned.
        unsafe { &*(self.tags.ptr as *const AtomicU16).add(index) }
    }

    fn slot(&self, index: usize) -> &Slot {
        assert!((index + 1) * std::mem::size_of::<Slot>() <= self.slots.len);
        // SAFETY: within the mapping; slots are 40 bytes, 8-aligned (page-aligned mapping).
        unsafe { &*(self.slots.ptr as *const Slot).add(index) }
    }

    /// The IPv4 element of a slot's bucket, and the slot's lane in it.
    fn v4_lane(&self, index: usize) -> (&V4Element, usize) {
        let bucket = index / LANES;
        assert!((bucket + 1) * std::mem::size_of::<V4Element>() <= self.v4.len);
        // SAFETY: within the mapping; 128-byte elements, page-aligned mapping.
        let element = unsafe { &*(self.v4.ptr as *const V4Element).add(bucket) };
        (element, index % LANES)
    }

    /// Publishes an IPv4 rule in its bucket's element (before its tag): its meta word, then
    /// its address.
    fn v4_publish(&self, index: usize, key: &Key, slow: bool) {
        let (element, lane) = self.v4_lane(index);
        element
            .meta(lane)
            .store(if slow { V4_SLOW } else { 0 }, Ordering::Release);
        element.addr(lane).store(key.lo as u32, Ordering::Release);
    }

    /// Sets a live IPv4 rule's FW_EXACT_V4_SLOW after its slot changed.
    fn v4_set_slow(&self, index: usize, slow: bool) {
        let (element, lane) = self.v4_lane(index);
        if slow {
            element.meta(lane).fetch_or(V4_SLOW, Ordering::AcqRel);
        } else {
            element.meta(lane).fetch_and(!V4_SLOW, Ordering::AcqRel);
        }
    }

    /// Changes a slot's expiry and reason, keeping its hits and generation.
    fn set_rule(&self, index: usize, key: &Key, expires_ns: u64, reason: u32) {
        let slot = self.slot(index);
        slot.expires_ns.store(expires_ns, Ordering::Relaxed);
        slot.set_reason(reason as u16, slot.generation());
        if !key.is_v6() {
            self.v4_set_slow(index, is_slow(expires_ns, reason));
        }
    }

    fn place(&self, key: &Key) -> Place {
        Place::of(key, self.seed, self.buckets)
    }

    fn holds(&self, index: usize, key: &Key) -> bool {
        let slot = self.slot(index);
        slot.state.load(Ordering::Acquire) == key.state
            && slot.addr[0].load(Ordering::Relaxed) == key.lo
            && slot.addr[1].load(Ordering::Relaxed) == key.hi
    }

    /// The lanes of a bucket whose tag is `tag` (0: the free lanes), as a bit set: four lanes a
    /// word, as the program compares them (exact_lanes in bpf/firewall/exact.h).
    fn lanes_with(&self, bucket: u32, tag: u16) -> u16 {
        const HIGHS: u64 = 0x8000_8000_8000_8000;
        let first = bucket as usize * LANES;
        assert!((first + LANES) * 2 <= self.tags.len);
        // SAFETY: within the mapping; a bucket is 32 bytes at a multiple of 32, so 8-aligned.
        let words =
            unsafe { &*(self.tags.ptr as *const [AtomicU64; LANES / 4]).add(bucket as usize) };
        let pattern = u64::from(tag) * 0x0001_0001_0001_0001;
        let mut lanes = 0u16;
        for (w, word) in words.iter().enumerate() {
            let v = word.load(Ordering::Acquire) ^ pattern;
            let zero = !(((v & !HIGHS) + !HIGHS) | v) & HIGHS;
            let four = (zero >> 15 & 1) | (zero >> 30 & 2) | (zero >> 45 & 4) | (zero >> 60 & 8);
            lanes |= (four as u16) << (4 * w);
        }
        lanes
    }

    /// The slots holding `key`, in bucket order (more than one only if an insert here raced the
    /// program's insert of the same address).
    fn slots_of(&self, key: &Key) -> impl Iterator<Item = usize> + '_ {
        let place = self.place(key);
        let second = (place.buckets[1] != place.buckets[0]).then_some(place.buckets[1]);
        let key = *key;
        std::iter::once(place.buckets[0])
            .chain(second)
            .flat_map(move |bucket| {
                lanes_in(self.lanes_with(bucket, place.tag))
                    .map(move |lane| bucket as usize * LANES + lane)
            })
            .filter(move |&index| self.holds(index, &key))
    }

    /// The entry of `key`, if it is in the table (expired or not).
    pub fn get(&self, key: &Key) -> Option<Entry> {
        self.slots_of(key)
            .next()
            .map(|index| self.entry(index, *key))
    }

    fn entry(&self, index: usize, key: Key) -> Entry {
        let slot = self.slot(index);
        // An IPv4 rule's lane counts hits its slot does not have yet (add_hit in hits.h).
        let lane_hits = if key.is_v6() {
            0
        } else {
            let (element, lane) = self.v4_lane(index);
            u64::from(element.meta(lane).load(Ordering::Relaxed) & V4_HITS)
        };
        Entry {
            key,
            hits: slot.hits.load(Ordering::Relaxed) + lane_hits,
            expires_ns: slot.expires_ns.load(Ordering::Relaxed),
            reason: slot.reason_generation.load(Ordering::Relaxed) & 0xffff,
            generation: slot.generation(),
        }
    }

    /// The free lanes of a bucket that may take `tag` (none once MAX_SAME_TAG lanes have it).
    fn room(&self, bucket: u32, tag: u16) -> u16 {
        debug_assert_ne!(tag, 0);
        if self.lanes_with(bucket, tag).count_ones() >= MAX_SAME_TAG {
            return 0;
        }
        self.lanes_with(bucket, 0)
    }

    /// Inserts `key`, or renews its rule (expiry and reason; hits stay) if it is there.
    pub fn insert(&self, key: &Key, expires_ns: u64, reason: u32) -> Result<Inserted, Full> {
        let place = self.place(key);
        self.filter_add(&place);
        if let Some(index) = self.slots_of(key).next() {
            let old = self.entry(index, *key);
            self.set_rule(index, key, expires_ns, reason);
            return Ok(Inserted::Renewed(old));
        }
        let mut choices = [
            (place.buckets[0], self.room(place.buckets[0], place.tag)),
            (place.buckets[1], self.room(place.buckets[1], place.tag)),
        ];
        if choices[1].1.count_ones() > choices[0].1.count_ones() {
            choices.swap(0, 1);
        }
        for (bucket, lanes) in choices {
            for lane in lanes_in(lanes) {
                let index = bucket as usize * LANES + lane;
                let slot = self.slot(index);
                if slot
                    .state
                    .compare_exchange(FREE, BUSY, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
                slot.addr[0].store(key.lo, Ordering::Relaxed);
                slot.addr[1].store(key.hi, Ordering::Relaxed);
                slot.hits.store(0, Ordering::Relaxed);
                slot.expires_ns.store(expires_ns, Ordering::Relaxed);
                slot.set_reason(reason as u16, slot.generation().wrapping_add(1));
                slot.state.store(key.state, Ordering::Release);
                if !key.is_v6() {
                    self.v4_publish(index, key, is_slow(expires_ns, reason));
                }
                self.tag(bucket, lane).store(place.tag, Ordering::Release);
                return Ok(Inserted::New);
            }
        }
        Err(Full)
    }

    /// Inserts (or renews) many keys, on every core for large batches: writers claim slots by
    /// compare-and-swap, so they need no lock between them (the keys must be distinct). Returns
    /// what was added and the old entries of what was renewed, for an undo, and the key that
    /// found no room if one did not (the others may have gone in).
    pub fn insert_all(
        &self,
        keys: &[Key],
        expires_ns: u64,
        reason: u32,
    ) -> (Vec<Key>, Vec<Entry>, Option<Key>) {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8);
        let chunk = if threads < 2 || keys.len() < 100_000 {
            keys.len().max(1)
        } else {
            keys.len().div_ceil(threads)
        };
        let insert_chunk = |keys: &[Key]| {
            let (mut added, mut renewed) = (Vec::new(), Vec::new());
            for key in keys {
                match self.insert(key, expires_ns, reason) {
                    Ok(Inserted::New) => added.push(*key),
                    Ok(Inserted::Renewed(old)) => renewed.push(old),
                    Err(Full) => return (added, renewed, Some(*key)),
                }
            }
            (added, renewed, None)
        };
        let results: Vec<_> = std::thread::scope(|scope| {
            let workers: Vec<_> = keys
                .chunks(chunk)
                .map(|keys| scope.spawn(move || insert_chunk(keys)))
                .collect();
            workers
                .into_iter()
                .map(|worker| worker.join().expect("an insert thread panicked"))
                .collect()
        });
        let (mut added, mut renewed, mut full) = (Vec::new(), Vec::new(), None);
        for (a, r, f) in results {
            added.extend(a);
            renewed.extend(r);
            full = full.or(f);
        }
        (added, renewed, full)
    }

    /// Puts back an entry's expiry and reason (undoing a renewal).
    pub fn restore(&self, old: &Entry) {
        for index in self.slots_of(&old.key) {
            self.set_rule(index, &old.key, old.expires_ns, old.reason);
        }
    }

    /// Frees a slot: its tag goes first, so the program stops finding it before it changes.
    fn free(&self, index: usize) {
        let slot = self.slot(index);
        let state = slot.state.load(Ordering::Acquire);
        if (state != LIVE_V4 && state != LIVE_V6)
            || slot
                .state
                .compare_exchange(state, BUSY, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.tag((index / LANES) as u32, index % LANES)
            .store(0, Ordering::Release);
        if state == LIVE_V4 {
            let (element, lane) = self.v4_lane(index);
            element.addr(lane).store(0, Ordering::Release);
            element.meta(lane).store(0, Ordering::Release);
        }
        slot.addr[0].store(0, Ordering::Relaxed);
        slot.addr[1].store(0, Ordering::Relaxed);
        slot.hits.store(0, Ordering::Relaxed);
        slot.expires_ns.store(0, Ordering::Relaxed);
        // The generation stays: the slot's next rule takes the one after it.
        slot.set_reason(0, slot.generation());
        slot.state.store(FREE, Ordering::Release);
    }

    /// Removes `key`. Returns whether it was there.
    pub fn remove(&self, key: &Key) -> bool {
        let found: Vec<usize> = self.slots_of(key).collect();
        for &index in &found {
            self.free(index);
        }
        !found.is_empty()
    }

    /// Calls `visit` with every entry (expired ones too) and its slot, in slot order.
    pub fn for_each(&self, mut visit: impl FnMut(usize, Entry)) {
        for bucket in 0..self.buckets {
            for lane in lanes_in(!self.lanes_with(bucket, 0)) {
                let index = bucket as usize * LANES + lane;
                let slot = self.slot(index);
                let state = slot.state.load(Ordering::Acquire);
                if state != LIVE_V4 && state != LIVE_V6 {
                    continue;
                }
                let key = Key {
                    lo: slot.addr[0].load(Ordering::Relaxed),
                    hi: slot.addr[1].load(Ordering::Relaxed),
                    state,
                };
                visit(index, self.entry(index, key));
            }
        }
    }

    /// Removes the entry in a slot, if it still holds `key` and is still expired at `now_ns`
    /// (the program may have renewed it since it was read).
    pub fn remove_expired(&self, index: usize, key: &Key, now_ns: u64) {
        let expires = self.slot(index).expires_ns.load(Ordering::Relaxed);
        if self.holds(index, key) && expires != 0 && now_ns >= expires {
            self.free(index);
        }
    }

    /// Removes every entry. Returns how many went.
    pub fn clear(&self) -> usize {
        let mut slots = Vec::new();
        self.for_each(|index, _| slots.push(index));
        for &index in &slots {
            self.free(index);
        }
        slots.len()
    }

    /// Entries in the table, expired ones included.
    pub fn len(&self) -> usize {
        let mut n = 0;
        self.for_each(|_, _| n += 1);
        n
    }

    pub fn is_empty(&self) -> bool {
        (0..self.buckets).all(|bucket| {
            (0..LANES).all(|lane| self.tag(bucket, lane).load(Ordering::Acquire) == 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_keep_families_apart() {
        for text in [
            "192.0.2.7",
            "2001:db8::1",
            "::ffff:192.0.2.7",
            "0.0.0.0",
            "::",
        ] {
            let addr: IpAddr = text.parse().unwrap();
            assert_eq!(Key::of(addr).addr(), addr);
        }
        let v4 = Key::of("192.0.2.7".parse().unwrap());
        let v6 = Key::of("c000:207::".parse().unwrap());
        assert_eq!((v4.lo, v4.hi), (v6.lo, v6.hi), "the same bytes");
        assert_ne!(v4, v6);
        assert_ne!(Place::of(&v4, 1, 1000), Place::of(&v6, 1, 1000));
    }

    #[test]
    fn places_fall_in_the_table_and_spread_with_the_seed() {
        let buckets = buckets_for(1_000_000);
        assert_eq!(buckets, 78_125);
        let mut load = vec![0u32; buckets as usize];
        for i in 0..100_000u32 {
            let place = Place::of(&Key::of(IpAddr::V4(i.into())), 7, buckets);
            assert!(place.buckets.iter().all(|&b| b < buckets) && place.tag != 0);
            load[place.buckets[0] as usize] += 1;
        }
        // 100,000 addresses over 78,125 buckets: about 1.28 each, none piled up.
        assert!(*load.iter().max().unwrap() < 12, "{:?}", load.iter().max());
        let key = Key::of("10.0.0.1".parse().unwrap());
        assert_ne!(Place::of(&key, 1, buckets), Place::of(&key, 2, buckets));
    }

    #[test]
    fn a_million_addresses_leave_most_of_the_filter_clear() {
        // The default table full: every address sets its bits in one word of a half.
        let buckets = buckets_for(1 << 20);
        let words = buckets as usize * FILTER_WORDS;
        let mut filter = vec![0u64; words];
        for i in 0..(1u32 << 20) {
            let place = Place::of(&Key::of(IpAddr::V4((0x0a00_0000 + i).into())), 7, buckets);
            assert!((place.filter_word as usize) < words);
            assert!((1..=3).contains(&place.filter_bits.count_ones()));
            filter[place.filter_word as usize] |= place.filter_bits;
        }
        // Absent addresses that still pass (the tags are read for them): 2.3% here.
        let passed = (0..100_000u32)
            .map(|i| Place::of(&Key::of(IpAddr::V4((0xc000_0000 + i).into())), 7, buckets))
            .filter(|p| filter[p.filter_word as usize] & p.filter_bits == p.filter_bits)
            .count();
        assert!(
            passed < 4_000,
            "{passed} of 100,000 absent addresses passed the filter"
        );
    }

    #[test]
    fn the_default_size_is_the_programs() {
        // The header's FW_DEFAULT_EXACT_BUCKETS sizes the program's own tables.
        assert_eq!(
            buckets_for(crate::abi::FW_DEFAULT_MAX_RULES),
            crate::abi::FW_DEFAULT_EXACT_BUCKETS
        );
    }

    #[test]
    fn small_tables_have_two_buckets_at_least() {
        assert_eq!(buckets_for(1), 2);
        assert_eq!(buckets_for(100), 8);
    }
}
