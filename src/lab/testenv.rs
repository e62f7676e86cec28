//! The veth lab, after the xdp-tutorial's testenv.sh: a veth pair whose outer end (named after the
//! lab) stays in the root namespace and whose inner end `veth0` lives in a network namespace of
//! the same name. Lab N has 10.11.N.1/24 and fc00:dead:cafe:N::1/64 outside, .2 and ::2 inside,
//! plus a second inside source .3 and ::3 (a "good" host beside a flooder in demos and tests),
//! fixed MACs and static neighbour entries, so the first packet needs no ARP or ND.
//!
//! Commands run inside the namespace through setns(2) on the network namespace only, never
//! `ip netns exec`, which remounts /sys and hides bpffs pins.

use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};

use crate::sys::pins;

/// The name of the lab's inner interface, inside its namespace.
pub const INNER_IFNAME: &str = "veth0";
/// The lab name when none is given.
pub const DEFAULT_NAME: &str = "xdptest";

const STATE_DIR: &str = "/run/xdpctl/testenv";
/// The lock that `testenv setup` holds while it picks a slot and makes a lab.
pub const LAB_LOCK: &str = "testenv";
const NETNS_DIR: &str = "/run/netns";

/// A lab that exists (or existed: see `is_alive`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lab {
    pub name: String,
    /// N in 10.11.N.0/24; unique among live labs.
    pub index: u8,
}

/// Checks a lab name: it becomes an interface name, so at most 15 characters.
pub fn validate_name(name: &str) -> Result<()> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let starts_alnum = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > 15 || !valid_chars || !starts_alnum {
        bail!(
            "invalid lab name {}: it names an interface and a network namespace, so it must \
             be 1-15 characters of letters, digits, '-' and '_', starting with a letter or digit",
            crate::input::shown(name)
        );
    }
    if name == INNER_IFNAME {
        bail!("invalid lab name '{name}': that is the name of the lab's inner interface");
    }
    Ok(())
}

/// A name no other lab of this process or any other live process uses: for tests and demos.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{:x}x{n:x}", std::process::id());
    assert!(
        name.len() <= 15,
        "lab name {name} is too long: shorten the prefix"
    );
    name
}

impl Lab {
    pub fn outer_ifname(&self) -> &str {
        &self.name
    }

    pub fn outer_ipv4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 11, self.index, 1)
    }

    pub fn inner_ipv4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 11, self.index, 2)
    }

    /// A second address inside the lab, for a second source.
    pub fn second_inner_ipv4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 11, self.index, 3)
    }

    pub fn second_inner_ipv6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfc00, 0xdead, 0xcafe, self.index as u16, 0, 0, 0, 3)
    }

    pub fn outer_ipv6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfc00, 0xdead, 0xcafe, self.index as u16, 0, 0, 0, 1)
    }

    pub fn inner_ipv6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfc00, 0xdead, 0xcafe, self.index as u16, 0, 0, 0, 2)
    }

    /// Locally administered MACs: 02:58:44:50 ("XDP") : N : 1 outside, 2 inside.
    pub fn outer_mac(&self) -> [u8; 6] {
        [0x02, 0x58, 0x44, 0x50, self.index, 1]
    }

    pub fn inner_mac(&self) -> [u8; 6] {
        [0x02, 0x58, 0x44, 0x50, self.index, 2]
    }

    pub fn netns_path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// Whether both the namespace and the outer interface still exist.
    pub fn is_alive(&self) -> bool {
        self.netns_path().exists() && nix::net::if_::if_nametoindex(self.name.as_str()).is_ok()
    }

    /// Creates a lab. Either the whole lab exists afterwards, or nothing of it does.
    pub fn setup(name: &str) -> Result<Lab> {
        validate_name(name)?;
        // Held until the lab is complete, so a concurrent setup of the same name cannot take
        // a half-made lab for a stale one.
        let _lock = lock_state()?;
        let lab = {
            let labs = Lab::list()?;
            if let Some(existing) = labs.iter().find(|lab| lab.name == name) {
                if existing.is_alive() {
                    bail!(
                        "lab '{name}' already exists: use it, or remove it with \
                         `xdpctl testenv teardown --name {name}`"
                    );
                }
                existing.teardown()?;
            }
            if nix::net::if_::if_nametoindex(name).is_ok() {
                bail!("an interface named '{name}' already exists: choose another lab name");
            }
            if Path::new(NETNS_DIR).join(name).exists() {
                bail!("a network namespace named '{name}' already exists: choose another lab name");
            }
            let used: Vec<u8> = labs
                .iter()
                .filter(|lab| lab.name != name)
                .map(|lab| lab.index)
                .collect();
            let index = (1..=254u8)
                .find(|n| !used.contains(n))
                .context("all 254 lab slots are in use: tear some labs down")?;
            let lab = Lab {
                name: name.to_owned(),
                index,
            };
            lab.write_state()?;
            lab
        };
        if let Err(err) = lab.create() {
            let _ = lab.teardown();
            return Err(err.context(format!("setting up lab '{name}'")));
        }
        Ok(lab)
    }

    fn create(&self) -> Result<()> {
        let (outer, ns) = (self.name.as_str(), self.name.as_str());
        ip(&["netns", "add", ns])?;
        let outer_mac = format_mac(self.outer_mac());
        let inner_mac = format_mac(self.inner_mac());
        ip(&[
            "link",
            "add",
            "dev",
            outer,
            "address",
            &outer_mac,
            "type",
            "veth",
            "peer",
            "name",
            INNER_IFNAME,
            "address",
            &inner_mac,
            "netns",
            ns,
        ])?;
        // Addresses before the links come up, and without DAD, so they work at once.
        ip(&[
            "addr",
            "add",
            &format!("{}/24", self.outer_ipv4()),
            "dev",
            outer,
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/64", self.outer_ipv6()),
            "dev",
            outer,
            "nodad",
        ])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/24", self.inner_ipv4()),
            "dev",
            INNER_IFNAME,
        ])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/64", self.inner_ipv6()),
            "dev",
            INNER_IFNAME,
            "nodad",
        ])?;
        for (addr, prefix) in [
            (self.second_inner_ipv4().to_string(), 24),
            (self.second_inner_ipv6().to_string(), 64),
        ] {
            let cidr = format!("{addr}/{prefix}");
            let mut args = vec!["-n", ns, "addr", "add", &cidr, "dev", INNER_IFNAME];
            if prefix == 64 {
                args.push("nodad");
            }
            ip(&args)?;
        }
        for (addr, mac) in [
            (self.inner_ipv4().to_string(), &inner_mac),
            (self.inner_ipv6().to_string(), &inner_mac),
            (self.second_inner_ipv4().to_string(), &inner_mac),
            (self.second_inner_ipv6().to_string(), &inner_mac),
        ] {
            ip(&[
                "neigh",
                "replace",
                &addr,
                "lladdr",
                mac,
                "dev",
                outer,
                "nud",
                "permanent",
            ])?;
        }
        for (addr, mac) in [
            (self.outer_ipv4().to_string(), &outer_mac),
            (self.outer_ipv6().to_string(), &outer_mac),
        ] {
            ip(&[
                "-n",
                ns,
                "neigh",
                "replace",
                &addr,
                "lladdr",
                mac,
                "dev",
                INNER_IFNAME,
                "nud",
                "permanent",
            ])?;
        }
        ip(&["link", "set", "dev", outer, "up"])?;
        ip(&["-n", ns, "link", "set", "dev", INNER_IFNAME, "up"])?;
        ip(&["-n", ns, "link", "set", "dev", "lo", "up"])?;
        // With GRO on, a veth accepts frames its peer sends with XDP_TX (`xdpctl flood`) even
        // without an XDP program of its own: needed to flood the kernel stack (netfilter).
        ethtool_gro_on(Command::new("ethtool"), outer)?;
        ethtool_gro_on(self.command("ethtool")?, INNER_IFNAME)?;
        Ok(())
    }

    /// Removes the lab and anything xdpctl pinned for it under this process's pin root.
    /// Idempotent.
    pub fn teardown(&self) -> Result<()> {
        self.teardown_with(LabPins::ProcessRoot)
    }

    /// Removes the lab, and its pins as `lab_pins` says. Idempotent.
    pub fn teardown_with(&self, lab_pins: LabPins) -> Result<()> {
        let mut problems = Vec::new();
        // Pins made from inside the lab (`testenv exec -- xdpctl load veth0`) are keyed by the
        // namespace's inode: note it before the namespace goes.
        let netns_inode = fs::metadata(self.netns_path()).map(|m| m.ino()).ok();
        if nix::net::if_::if_nametoindex(self.name.as_str()).is_ok() {
            // A lab's outer interface is a veth: never delete anything else by that name.
            match kept_interface(&self.name, crate::lab::flood::driver(&self.name)) {
                Some(why) => problems.push(why),
                None => {
                    if let Err(err) = ip(&["link", "del", "dev", &self.name]) {
                        problems.push(format!("{err:#}"));
                    }
                }
            }
        }
        if self.netns_path().exists() {
            if let Err(err) = ip(&["netns", "del", &self.name]) {
                problems.push(format!("{err:#}"));
            }
        }
        if lab_pins == LabPins::ProcessRoot {
            // The link pinned for the deleted interface is defunct now: drop its pins.
            if let Err(err) = pins::remove_interface_dir(&self.name) {
                problems.push(format!("{err:#}"));
            }
            if let Some(inode) = netns_inode {
                if let Err(err) = pins::remove_namespace_pins(inode) {
                    problems.push(format!("{err:#}"));
                }
            }
        }
        pins::remove_run_record(&self.name);
        let _ = fs::remove_file(state_path(&self.name));
        if !problems.is_empty() {
            bail!("tearing down lab '{}': {}", self.name, problems.join("; "));
        }
        Ok(())
    }

    /// An existing lab by name.
    pub fn open(name: &str) -> Result<Lab> {
        validate_name(name)?;
        let lab = Lab::list()?
            .into_iter()
            .find(|lab| lab.name == name)
            .with_context(|| {
                format!(
                    "no lab named '{name}': create it with `xdpctl testenv setup --name {name}`"
                )
            })?;
        if !lab.is_alive() {
            bail!(
                "lab '{name}' is broken (its namespace or interface is gone): \
                 `xdpctl testenv teardown --name {name}`, then set it up again"
            );
        }
        Ok(lab)
    }

    /// Every lab with a state record, alive or not.
    pub fn list() -> Result<Vec<Lab>> {
        let dir = Path::new(STATE_DIR);
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let mut labs = Vec::new();
        for entry in fs::read_dir(dir).with_context(|| format!("reading {STATE_DIR}"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Only names `setup` could have made: a lab's name is used for `ip link del` and
            // paths, so a stray file must not name one (`eth0`, `..`).
            if validate_name(&name).is_err() {
                continue;
            }
            let text = fs::read_to_string(entry.path()).unwrap_or_default();
            if let Ok(index) = text.trim().parse::<u8>() {
                labs.push(Lab { name, index });
            }
        }
        labs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(labs)
    }

    fn write_state(&self) -> Result<()> {
        crate::sys::locks::ensure_state_dir()?;
        fs::create_dir_all(STATE_DIR).with_context(|| format!("creating {STATE_DIR}"))?;
        fs::write(state_path(&self.name), format!("{}\n", self.index))
            .with_context(|| format!("writing the state of lab '{}'", self.name))
    }

    /// A command that runs inside the lab's network namespace (and keeps the host's mounts, so
    /// bpffs pins stay visible).
    pub fn command(&self, program: &str) -> Result<Command> {
        let netns = File::open(self.netns_path())
            .with_context(|| format!("opening the namespace of lab '{}'", self.name))?;
        let mut command = Command::new(program);
        // SAFETY: setns is async-signal-safe, and the closure touches nothing but the fd.
        unsafe {
            command.pre_exec(move || {
                nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from)
            });
        }
        Ok(command)
    }

    /// `ping` from inside the lab to the outer interface, so the packets arrive on the outer
    /// interface, where programs get attached.
    pub fn ping_command(&self, count: u32, ipv6: bool, interval: f64) -> Result<Command> {
        self.ping_command_from(None, count, ipv6, interval)
    }

    /// `ping_command` from a given inside source address (`ping -I`).
    pub fn ping_command_from(
        &self,
        source: Option<std::net::IpAddr>,
        count: u32,
        ipv6: bool,
        interval: f64,
    ) -> Result<Command> {
        let mut command = self.command("ping")?;
        if let Some(source) = source {
            command.args(["-I", &source.to_string()]);
        }
        let target = if ipv6 {
            self.outer_ipv6().to_string()
        } else {
            self.outer_ipv4().to_string()
        };
        command.args([
            if ipv6 { "-6" } else { "-4" },
            "-c",
            &count.to_string(),
            "-i",
            &interval.to_string(),
            "-W",
            "1",
            &target,
        ]);
        Ok(command)
    }
}

/// What a lab's teardown does with the pins xdpctl made for the lab's interfaces (its outer
/// end, and `veth0` inside it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabPins {
    /// Removes them under this process's pin root ([`pins::root`]): `xdpctl testenv teardown`,
    /// the demo and the bench, which made them there.
    ProcessRoot,
    /// Touches no pin root: the pins are under a root whose owner removes them (a test's
    /// private instance), and this process's root, the global one in a test, is not theirs.
    Leave,
}

/// Tears a lab down when dropped: for tests and demos, which must clean up even when they fail.
pub struct LabGuard(Lab, LabPins);

impl LabGuard {
    /// A lab whose teardown removes its pins under this process's pin root.
    pub fn setup(name: &str) -> Result<LabGuard> {
        LabGuard::setup_with(name, LabPins::ProcessRoot)
    }

    /// A lab whose teardown does with its pins what `lab_pins` says.
    pub fn setup_with(name: &str, lab_pins: LabPins) -> Result<LabGuard> {
        Lab::setup(name).map(|lab| LabGuard(lab, lab_pins))
    }
}

impl std::ops::Deref for LabGuard {
    type Target = Lab;

    fn deref(&self) -> &Lab {
        &self.0
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Err(err) = self.0.teardown_with(self.1) {
            eprintln!("xdpctl: {err:#}");
        }
    }
}

/// Why the interface `name`, of driver `driver`, is not deleted as a lab's outer end; None if
/// it may be: only an interface known to be a veth is.
fn kept_interface(name: &str, driver: Result<String>) -> Option<String> {
    match driver {
        Ok(driver) if driver == "veth" => None,
        Ok(driver) => Some(format!(
            "{name} is a {driver} interface, not the lab's veth: left alone"
        )),
        Err(err) => Some(format!(
            "{name} left alone: cannot tell whether it is the lab's veth ({err:#})"
        )),
    }
}

fn state_path(name: &str) -> PathBuf {
    Path::new(STATE_DIR).join(name)
}

/// Serialises slot allocation between concurrent `testenv setup`s (parallel tests).
/// One of xdpctl's named locks ([`crate::sys::locks`]): root's alone, it says what it waits for and
/// gives up after the lock timeout.
fn lock_state() -> Result<crate::sys::locks::NamedLock> {
    crate::sys::locks::lock(LAB_LOCK).context("locking the labs")
}

fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ethtool_gro_on(mut ethtool: Command, ifname: &str) -> Result<()> {
    let output = ethtool
        .args(["-K", ifname, "gro", "on"])
        .output()
        .map_err(|err| anyhow::anyhow!("running ethtool ({err}): run `make deps`"))?;
    if !output.status.success() {
        bail!(
            "`ethtool -K {ifname} gro on` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `ip` from iproute2 and turns a failure into an error that quotes it.
fn ip(args: &[&str]) -> Result<()> {
    let output = Command::new("ip").args(args).output().map_err(|err| {
        if err.kind() == io::ErrorKind::NotFound {
            anyhow::anyhow!("iproute2's `ip` is not installed: run `make deps`")
        } else {
            anyhow::anyhow!("running ip: {err}")
        }
    })?;
    if !output.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_fit_an_interface_name() {
        assert!(validate_name("xdptest").is_ok());
        assert!(validate_name("lab-1_a").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a234567890123456").is_err());
        assert!(validate_name("-lab").is_err());
        assert!(validate_name("lab/1").is_err());
        assert!(validate_name("lab 1").is_err());
        assert!(validate_name("veth0").is_err());
        let err = validate_name("a/b").unwrap_err().to_string();
        assert!(err.contains("a/b") && err.contains("15"), "{err}");
    }

    #[test]
    fn teardown_deletes_only_an_interface_known_to_be_a_veth() {
        assert_eq!(kept_interface("lab1", Ok("veth".into())), None);
        let kept = kept_interface("lab1", Ok("bridge".into())).unwrap();
        assert!(
            kept.contains("a bridge interface, not the lab's veth"),
            "{kept}"
        );
        // The driver could not be read (the ioctl failed, or the interface vanished).
        let kept = kept_interface("lab1", Err(anyhow::anyhow!("No such device"))).unwrap();
        assert!(
            kept.contains("cannot tell whether it is the lab's veth (No such device)"),
            "{kept}"
        );
    }

    #[test]
    fn unique_names_are_valid_and_distinct() {
        let a = unique_name("xt");
        let b = unique_name("xt");
        assert_ne!(a, b);
        validate_name(&a).unwrap();
    }

    #[test]
    fn addresses_follow_the_index() {
        let lab = Lab {
            name: "x".into(),
            index: 7,
        };
        assert_eq!(lab.outer_ipv4().to_string(), "10.11.7.1");
        assert_eq!(lab.inner_ipv4().to_string(), "10.11.7.2");
        assert_eq!(lab.outer_ipv6().to_string(), "fc00:dead:cafe:7::1");
        assert_eq!(lab.inner_ipv6().to_string(), "fc00:dead:cafe:7::2");
        assert_eq!(format_mac(lab.inner_mac()), "02:58:44:50:07:02");
    }
}
