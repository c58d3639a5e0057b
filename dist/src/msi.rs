//! `jarvis-dist installer msi`: a per-user Windows Installer package
//! (`InstallScope="perUser"`, no elevation), written as WiX source and
//! built with `wixl` (Debian's `msitools`).
//!
//! It installs the launcher and the release it carries into
//! `%LOCALAPPDATA%\Programs\Jarvis` with `resources\installer-version`
//! rather than the updater's `current` pointer (see
//! [`crate::installer::Pointer`]), a Start-menu shortcut, and registers
//! itself in Apps & features. Version folders the updater writes later are
//! not the MSI's, so an MSI upgrade never fights the updater; on uninstall
//! the launcher's own `jarvis uninstall --keep-launcher` removes them
//! (with `--remove-data` only when `REMOVEDATA=1` is given), then Windows
//! Installer removes its files.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::DistError;
use crate::feed::{file_error, list_files};
use crate::installer::{Pointer, SignedRelease, put, run_tool, work_dir};

/// Jarvis' MSI upgrade code: the same for every version, forever, so each
/// MSI replaces the one before (a major upgrade).
pub const UPGRADE_CODE: &str = "6F1D3C2E-8B4A-4F4B-9D7E-2A5C1B9E7F30";

/// Builds `<out>/Jarvis-<version>-<arch>.msi` carrying `release`.
pub fn build(release: &SignedRelease, out: &Path) -> Result<PathBuf, DistError> {
    if !release.is_windows() {
        return Err(DistError::BadManifest(format!(
            "an MSI carries a Windows release, not one for {}",
            release.target()
        )));
    }
    let version = release.release.version;
    let work = work_dir(out, ".msi-")?;
    let payload = work.path().join("payload");
    release.write_install(&payload, Pointer::InstallerVersion)?;

    let wxs = work.path().join("jarvis.wxs");
    put(&wxs, wix_source(release, &payload)?.as_bytes(), false)?;
    let partial = work.path().join("jarvis.msi");
    run_tool(
        Command::new("wixl")
            .current_dir(work.path())
            .args(["-a", "x64", "-o"])
            .arg(&partial)
            .arg(&wxs),
        "wixl",
        "wixl",
    )?;
    let path = out.join(format!("Jarvis-{version}-{}.msi", release.arch()));
    std::fs::rename(&partial, &path).map_err(|e| file_error("move", &path, e))?;
    Ok(path)
}

/// The WiX source: one component per folder (per-user components key on
/// an HKCU value, and remove their folder on uninstall).
fn wix_source(release: &SignedRelease, payload: &Path) -> Result<String, DistError> {
    let launcher = release.launcher_name();
    let mut folders: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in list_files(payload)? {
        let (dir, _) = file.rsplit_once('/').unwrap_or(("", &file));
        folders
            .entry(dir.to_owned())
            .or_default()
            .push(file.clone());
        // Every ancestor folder exists in the tree too.
        let mut ancestor = dir;
        while let Some((parent, _)) = ancestor.rsplit_once('/') {
            folders.entry(parent.to_owned()).or_default();
            ancestor = parent;
        }
        folders.entry(String::new()).or_default();
    }
    let ids: BTreeMap<&str, String> = folders
        .keys()
        .enumerate()
        .map(|(i, dir)| {
            let id = if dir.is_empty() {
                "INSTALLDIR".to_owned()
            } else {
                format!("d{i}")
            };
            (dir.as_str(), id)
        })
        .collect();

    let mut components = String::new();
    let mut refs = String::new();
    let mut file_index = 0;
    for (i, (dir, files)) in folders.iter().enumerate() {
        let _ = writeln!(
            components,
            r#"    <DirectoryRef Id="{dir_id}">
      <Component Id="c{i}" Guid="*">
        <RegistryValue Root="HKCU" Key="Software\Jarvis\Installer" Name="c{i}" Type="integer" Value="1" KeyPath="yes"/>
        <RemoveFolder Id="r{i}" On="uninstall"/>"#,
            dir_id = ids[dir.as_str()],
        );
        for file in files {
            let name = file.rsplit('/').next().unwrap_or(file);
            let id = if *file == launcher {
                "launcher".to_owned()
            } else {
                file_index += 1;
                format!("f{file_index}")
            };
            // wixl takes sources relative to the folder it runs in.
            let source = Path::new("payload").join(file);
            let _ = writeln!(
                components,
                r#"        <File Id="{id}" Name="{name}" Source="{source}"/>"#,
                name = xml(name),
                source = xml(&source.display().to_string()),
            );
        }
        let _ = writeln!(components, "      </Component>\n    </DirectoryRef>");
        let _ = writeln!(refs, r#"      <ComponentRef Id="c{i}"/>"#);
    }

    // The folder tree, nested.
    fn tree(
        dir: &str,
        folders: &BTreeMap<String, Vec<String>>,
        ids: &BTreeMap<&str, String>,
        depth: usize,
        out: &mut String,
    ) {
        for child in folders
            .keys()
            .filter(|d| !d.is_empty() && d.rsplit_once('/').map_or("", |(parent, _)| parent) == dir)
        {
            let name = child.rsplit('/').next().unwrap_or(child);
            let indent = "  ".repeat(depth);
            let _ = writeln!(
                out,
                r#"{indent}<Directory Id="{}" Name="{}">"#,
                ids[child.as_str()],
                xml(name)
            );
            tree(child, folders, ids, depth + 1, out);
            let _ = writeln!(out, "{indent}</Directory>");
        }
    }
    let mut directories = String::new();
    tree("", &folders, &ids, 6, &mut directories);

    let version = release.release.version;
    Ok(format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<Wix xmlns="http://schemas.microsoft.com/wix/2006/wi">
  <Product Id="*" Name="Jarvis" Language="1033" Version="{version}" Manufacturer="Jarvis developers" UpgradeCode="{UPGRADE_CODE}">
    <Package InstallerVersion="500" Compressed="yes" InstallScope="perUser" Description="Jarvis {version}, your local AI assistant"/>
    <MajorUpgrade DowngradeErrorMessage="A newer Jarvis is already installed."/>
    <Media Id="1" Cabinet="jarvis.cab" EmbedCab="yes"/>
    <Property Id="ARPNOMODIFY" Value="1"/>
    <Property Id="ARPNOREPAIR" Value="1"/>
    <Property Id="ARPCONTACT" Value="Jarvis developers"/>
    <Directory Id="TARGETDIR" Name="SourceDir">
      <Directory Id="LocalAppDataFolder">
        <Directory Id="ProgramsFolder" Name="Programs">
          <Directory Id="INSTALLDIR" Name="Jarvis">
{directories}          </Directory>
        </Directory>
      </Directory>
      <Directory Id="ProgramMenuFolder">
        <Component Id="shortcut" Guid="*">
          <Shortcut Id="startMenu" Name="Jarvis" Description="Your local AI assistant" Target="[INSTALLDIR]{launcher}" WorkingDirectory="INSTALLDIR"/>
          <RegistryValue Root="HKCU" Key="Software\Jarvis\Installer" Name="shortcut" Type="integer" Value="1" KeyPath="yes"/>
        </Component>
      </Directory>
    </Directory>
{components}
    <CustomAction Id="RemoveAppKeepData" FileKey="launcher" ExeCommand="uninstall --keep-launcher" Execute="deferred" Impersonate="yes" Return="ignore"/>
    <CustomAction Id="RemoveAppAndData" FileKey="launcher" ExeCommand="uninstall --keep-launcher --remove-data" Execute="deferred" Impersonate="yes" Return="ignore"/>
    <InstallExecuteSequence>
      <Custom Action="RemoveAppKeepData" Sequence="3400">REMOVE="ALL" AND NOT UPGRADINGPRODUCTCODE AND NOT REMOVEDATA="1"</Custom>
      <Custom Action="RemoveAppAndData" Sequence="3401">REMOVE="ALL" AND NOT UPGRADINGPRODUCTCODE AND REMOVEDATA="1"</Custom>
    </InstallExecuteSequence>
    <Feature Id="Jarvis" Title="Jarvis" Level="1">
      <ComponentRef Id="shortcut"/>
{refs}    </Feature>
  </Product>
</Wix>
"#
    ))
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
