//! `fluvio profile`: the named profiles of the profile file
//! (`~/.fluvio/config`, Fluvio's layout), each pointing at a cluster, and
//! which one commands use.

use clap::Subcommand;
use fluvio_client::{ConfigFile, FluvioClusterConfig, Profile};

use crate::error::{CliError, CliResult};
use crate::table;

/// The profile subcommands, with Fluvio's names.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Print the current profile's name.
    Current,
    /// List the profiles; the current one is marked with `*`.
    List,
    /// Use another profile from now on.
    Switch {
        /// The profile's name.
        name: String,
    },
    /// Add (or replace) a profile, with a cluster of the same name at
    /// `address`, and make it current.
    Add {
        /// The profile's name.
        name: String,
        /// The cluster's address, e.g. 127.0.0.1:9003.
        address: String,
        /// How the cluster was installed (Fluvio's `local`, `k8`, ...);
        /// accepted and not used.
        installation_type: Option<String>,
    },
    /// Delete a profile (not its cluster).
    Delete {
        /// The profile's name.
        name: String,
    },
    /// Delete a cluster that no profile uses.
    DeleteCluster {
        /// The cluster's name.
        name: String,
    },
    /// Rename a profile.
    Rename {
        /// The profile's name now.
        from: String,
        /// Its new name.
        to: String,
    },
}

/// Runs a profile subcommand on the profile file.
pub fn run(command: ProfileCommand) -> CliResult {
    let path = ConfigFile::default_path();
    let mut file = ConfigFile::load(&path)?.unwrap_or_default();
    let missing = |name: &str, file: &ConfigFile| {
        CliError::failed(format!(
            "no profile {name:?}; the profiles are {:?} (see `fluvio profile list`)",
            file.profiles.keys().collect::<Vec<_>>()
        ))
    };
    match command {
        ProfileCommand::Current => {
            let current = file.current_profile.as_deref().ok_or_else(|| {
                CliError::failed("no profile is current; add one with `fluvio profile add NAME ADDRESS`")
            })?;
            println!("{current}");
            return Ok(());
        }
        ProfileCommand::List => {
            let rows: Vec<Vec<String>> = file
                .profiles
                .iter()
                .map(|(name, profile)| {
                    let mark = if file.current_profile.as_deref() == Some(name) { "*" } else { "" };
                    let cluster = file.clusters.get(&profile.cluster);
                    let address = cluster.map_or_else(|| "(no such cluster)".to_string(), |c| c.endpoint.clone());
                    let tls = cluster.map_or("", |c| match c.tls {
                        fluvio_client::TlsPolicy::Disabled => "disabled",
                        fluvio_client::TlsPolicy::Verified(_) => "verified",
                    });
                    vec![mark.to_string(), name.clone(), profile.cluster.clone(), address, tls.to_string()]
                })
                .collect();
            print!("{}", table(&["", "PROFILE", "CLUSTER", "ADDRESS", "TLS"], &rows));
            return Ok(());
        }
        ProfileCommand::Switch { name } => {
            if !file.profiles.contains_key(&name) {
                return Err(missing(&name, &file));
            }
            file.current_profile = Some(name.clone());
            println!("profile \"{name}\" is current");
        }
        ProfileCommand::Add { name, address, installation_type: _ } => {
            file.clusters.insert(name.clone(), FluvioClusterConfig::new(address.clone()));
            file.profiles.insert(name.clone(), Profile { cluster: name.clone() });
            file.current_profile = Some(name.clone());
            file.version.get_or_insert_with(|| "2.0".to_string());
            println!("profile \"{name}\" added ({address}) and current");
        }
        ProfileCommand::Delete { name } => {
            if file.profiles.remove(&name).is_none() {
                return Err(missing(&name, &file));
            }
            if file.current_profile.as_deref() == Some(name.as_str()) {
                file.current_profile = None;
                eprintln!("no profile is current now; pick one with `fluvio profile switch NAME`");
            }
            println!("profile \"{name}\" deleted");
        }
        ProfileCommand::DeleteCluster { name } => {
            let users: Vec<&String> =
                file.profiles.iter().filter(|(_, profile)| profile.cluster == name).map(|(user, _)| user).collect();
            if !users.is_empty() {
                return Err(CliError::failed(format!(
                    "cluster {name:?} is used by profiles {users:?}; delete them first"
                )));
            }
            if file.clusters.remove(&name).is_none() {
                return Err(CliError::failed(format!("no cluster {name:?} in the profile file")));
            }
            println!("cluster \"{name}\" deleted");
        }
        ProfileCommand::Rename { from, to } => {
            if file.profiles.contains_key(&to) {
                return Err(CliError::failed(format!("a profile {to:?} exists already")));
            }
            let profile = file.profiles.remove(&from).ok_or_else(|| missing(&from, &file))?;
            file.profiles.insert(to.clone(), profile);
            if file.current_profile.as_deref() == Some(from.as_str()) {
                file.current_profile = Some(to.clone());
            }
            println!("profile \"{from}\" renamed \"{to}\"");
        }
    }
    file.save(&path)?;
    Ok(())
}
