//! `jarvis-dist installer nsis`: a per-user `Setup.exe` (no elevation),
//! built with `makensis` (Debian's `nsis`, 64-bit unicode target).
//!
//! It installs the launcher and the release it carries into
//! `%LOCALAPPDATA%\Programs\Jarvis` (with `resources\installer-version`,
//! like the MSI), a Start-menu shortcut, and an uninstaller registered in
//! Apps & features. `/S` installs and uninstalls silently; the uninstaller
//! runs `jarvis uninstall --keep-launcher` first (the updater's versions
//! go too) and keeps the user-data folder unless `/REMOVEDATA` is given.
//! An install folder inside the data folder is refused.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::DistError;
use crate::feed::file_error;
use crate::installer::{Compression, Pointer, SignedRelease, put, run_tool, work_dir};

/// Builds `<out>/Jarvis-Setup-<version>-<arch>.exe` carrying `release`.
pub fn build(
    release: &SignedRelease,
    compression: Compression,
    out: &Path,
) -> Result<PathBuf, DistError> {
    if !release.is_windows() {
        return Err(DistError::BadManifest(format!(
            "Setup.exe carries a Windows release, not one for {}",
            release.target()
        )));
    }
    let version = release.release.version;
    let work = work_dir(out, ".nsis-")?;
    let payload = work.path().join("payload");
    release.write_install(&payload, Pointer::InstallerVersion)?;
    let name = format!("Jarvis-Setup-{version}-{}.exe", release.arch());
    let script = work.path().join("jarvis.nsi");
    put(
        &script,
        nsis_script(&version.to_string(), &payload, "setup.exe", compression).as_bytes(),
        false,
    )?;
    run_tool(
        Command::new("makensis")
            .args(["-V2", "-INPUTCHARSET", "UTF8"])
            .arg(&script),
        "makensis",
        "nsis",
    )?;
    let path = out.join(name);
    let built = work.path().join("setup.exe");
    std::fs::rename(&built, &path).map_err(|e| file_error("move", &path, e))?;
    Ok(path)
}

fn nsis_script(version: &str, payload: &Path, out_file: &str, compression: Compression) -> String {
    let payload = payload.display();
    let compressor = match compression {
        Compression::Best => "/SOLID lzma",
        Compression::Fast => "zlib",
    };
    format!(
        r#"Unicode true
Target amd64-unicode
SetCompressor {compressor}
RequestExecutionLevel user
Name "Jarvis"
OutFile "{out_file}"
InstallDir "$LOCALAPPDATA\Programs\Jarvis"
BrandingText "Jarvis {version}"
ShowInstDetails show
ShowUninstDetails show

!include "FileFunc.nsh"
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\Jarvis"

Page directory
Page instfiles
UninstPage uninstConfirm
UninstPage instfiles

Function .onVerifyInstDir
  ; Never inside the user-data folder (%APPDATA%\SparkAI).
  StrLen $1 "$APPDATA\SparkAI"
  StrCpy $0 "$INSTDIR" $1
  StrCmp $0 "$APPDATA\SparkAI" 0 +2
    Abort
FunctionEnd

Section "Jarvis"
  StrLen $1 "$APPDATA\SparkAI"
  StrCpy $0 "$INSTDIR" $1
  StrCmp $0 "$APPDATA\SparkAI" 0 +3
    MessageBox MB_ICONSTOP "Jarvis cannot be installed inside its data folder ($APPDATA\SparkAI)." /SD IDOK
    Abort
  SetOutPath "$INSTDIR"
  File /r "{payload}\*"
  WriteUninstaller "$INSTDIR\Uninstall.exe"
  CreateShortcut "$SMPROGRAMS\Jarvis.lnk" "$INSTDIR\jarvis.exe"
  WriteRegStr HKCU "${{UNINSTALL_KEY}}" "DisplayName" "Jarvis"
  WriteRegStr HKCU "${{UNINSTALL_KEY}}" "DisplayVersion" "{version}"
  WriteRegStr HKCU "${{UNINSTALL_KEY}}" "Publisher" "Jarvis developers"
  WriteRegStr HKCU "${{UNINSTALL_KEY}}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${{UNINSTALL_KEY}}" "DisplayIcon" "$INSTDIR\jarvis.exe"
  WriteRegStr HKCU "${{UNINSTALL_KEY}}" "UninstallString" '"$INSTDIR\Uninstall.exe"'
  WriteRegStr HKCU "${{UNINSTALL_KEY}}" "QuietUninstallString" '"$INSTDIR\Uninstall.exe" /S'
  WriteRegDWORD HKCU "${{UNINSTALL_KEY}}" "NoModify" 1
  WriteRegDWORD HKCU "${{UNINSTALL_KEY}}" "NoRepair" 1
SectionEnd

Section "Uninstall"
  ; The app, the updater's versions included; the data folder only when
  ; asked (/REMOVEDATA).
  ${{GetParameters}} $R0
  ClearErrors
  ${{GetOptions}} $R0 "/REMOVEDATA" $R1
  IfErrors keep_data
    ExecWait '"$INSTDIR\jarvis.exe" uninstall --keep-launcher --remove-data' $0
    Goto removed
  keep_data:
    ExecWait '"$INSTDIR\jarvis.exe" uninstall --keep-launcher' $0
  removed:
  RMDir /r "$INSTDIR\resources"
  Delete "$INSTDIR\jarvis.exe"
  Delete "$INSTDIR\Uninstall.exe"
  RMDir "$INSTDIR"
  Delete "$SMPROGRAMS\Jarvis.lnk"
  DeleteRegKey HKCU "${{UNINSTALL_KEY}}"
SectionEnd
"#
    )
}
