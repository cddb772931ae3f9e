//! The files a task reads: its secrets and configs, with the data the managers sent this
//! node for its tasks only. They are held in memory and written only into a tmpfs: for
//! the docker runtime a tmpfs per task under the run directory, bind-mounted read-only
//! into the container (as dockerd does); for the process runtime a tmpfs inside the
//! task's own mount namespace (process.rs). Never onto a disk.

use std::collections::HashMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};

use shoal_proto::{AssignmentSet, Task};

use super::RuntimeError;

/// Where a task's secrets appear.
pub const SECRETS_DIR: &str = "/run/secrets";

/// One file of a task.
#[derive(Clone)]
pub struct TaskFile {
    /// The path the task sees: /run/secrets/<name>, or a config's absolute path.
    pub path: String,
    pub data: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl std::fmt::Debug for TaskFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskFile({}, {} bytes)", self.path, self.data.len())
    }
}

/// The data of the secrets and configs in this node's assignments, by ID.
#[derive(Default, Clone)]
pub struct FileData {
    secrets: HashMap<String, Vec<u8>>,
    configs: HashMap<String, Vec<u8>>,
}

impl FileData {
    /// What the latest assignment set carries (anything else is forgotten).
    pub fn from_assignments(set: &AssignmentSet) -> FileData {
        let data = |spec_data: Option<&Vec<u8>>| spec_data.cloned().unwrap_or_default();
        FileData {
            secrets: set
                .secrets
                .iter()
                .map(|s| (s.id.clone(), data(s.spec.as_ref().map(|x| &x.data))))
                .collect(),
            configs: set
                .configs
                .iter()
                .map(|c| (c.id.clone(), data(c.spec.as_ref().map(|x| &x.data))))
                .collect(),
        }
    }

    /// The task's files, or which one this node was not given.
    pub fn for_task(&self, task: &Task) -> Result<Vec<TaskFile>, RuntimeError> {
        let Some(c) = task.spec.as_ref().and_then(|s| s.container.as_ref()) else {
            return Ok(vec![]);
        };
        let refs = c
            .secrets
            .iter()
            .map(|r| {
                (
                    "secret",
                    &r.secret_id,
                    &r.secret_name,
                    r.file.as_ref(),
                    &self.secrets,
                )
            })
            .chain(c.configs.iter().map(|r| {
                (
                    "config",
                    &r.config_id,
                    &r.config_name,
                    r.file.as_ref(),
                    &self.configs,
                )
            }));
        let mut files = Vec::new();
        for (word, id, name, file, store) in refs {
            let data = store.get(id).ok_or_else(|| {
                RuntimeError::Failed(format!(
                    "{word} {name} was not sent to this node (removed since the task was made?)"
                ))
            })?;
            let file = file.cloned().unwrap_or_default();
            let path = if word == "secret" && !file.name.starts_with('/') {
                format!("{SECRETS_DIR}/{}", file.name)
            } else {
                file.name.clone()
            };
            let number = |s: &str| s.parse::<u32>().unwrap_or(0);
            files.push(TaskFile {
                path,
                data: data.clone(),
                uid: number(&file.uid),
                gid: number(&file.gid),
                mode: if file.mode == 0 { 0o444 } else { file.mode },
            });
        }
        Ok(files)
    }
}

fn cstring(path: &Path) -> Result<CString, RuntimeError> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| RuntimeError::Failed(format!("{} holds a NUL byte", path.display())))
}

fn os_err(what: &str) -> RuntimeError {
    RuntimeError::Failed(format!("{what}: {}", std::io::Error::last_os_error()))
}

/// Room for the files and their inodes, rounded up (a tmpfs counts whole pages).
pub fn tmpfs_size(files: &[TaskFile]) -> usize {
    files.iter().map(|f| f.data.len() + 4096).sum::<usize>() + 64 * 1024
}

/// Mounts a fresh tmpfs at `dir` (which must exist): only root goes in (each file is
/// bound into its container by itself).
pub fn mount_tmpfs(dir: &Path, size: usize) -> Result<(), RuntimeError> {
    let target = cstring(dir)?;
    let options = CString::new(format!("mode=0700,size={size}")).expect("no NUL");
    // SAFETY: valid C strings; mount(2) reads them only.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            options.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(os_err(&format!("mounting a tmpfs at {}", dir.display())));
    }
    Ok(())
}

/// Writes one file with its owner and mode (creating its directories).
pub fn write_file(path: &Path, f: &TaskFile) -> Result<(), RuntimeError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |what: &str, e: std::io::Error| {
        RuntimeError::Failed(format!("{what} {}: {e}", path.display()))
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io("making the directory of", e))?;
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io("creating", e))?;
    std::io::Write::write_all(&mut out, &f.data).map_err(|e| io("writing", e))?;
    std::os::unix::fs::fchown(&out, Some(f.uid), Some(f.gid)).map_err(|e| io("chown of", e))?;
    out.set_permissions(std::fs::Permissions::from_mode(f.mode))
        .map_err(|e| io("chmod of", e))?;
    Ok(())
}

/// The docker runtime's tmpfs per task under `<run-dir>/task-files/<task>`; each file
/// is bind-mounted read-only into the container at its path.
pub struct HostTmpfs {
    root: PathBuf,
}

impl HostTmpfs {
    pub fn new(run_dir: &Path) -> HostTmpfs {
        HostTmpfs {
            root: run_dir.join("task-files"),
        }
    }

    fn dir(&self, task_id: &str) -> PathBuf {
        self.root.join(task_id)
    }

    /// Writes the task's files into a fresh tmpfs; returns (host path, file) pairs.
    pub fn write<'a>(
        &self,
        task_id: &str,
        files: &'a [TaskFile],
    ) -> Result<Vec<(PathBuf, &'a TaskFile)>, RuntimeError> {
        if files.is_empty() {
            return Ok(vec![]);
        }
        let dir = self.dir(task_id);
        // A tmpfs left by an earlier attempt goes first: the files are written afresh.
        self.remove(task_id);
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| RuntimeError::Failed(format!("making {}: {e}", dir.display())))?;
        }
        mount_tmpfs(&dir, tmpfs_size(files))?;
        let mut written = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let host = dir.join(i.to_string());
            if let Err(e) = write_file(&host, f) {
                self.remove(task_id);
                return Err(e);
            }
            written.push((host, f));
        }
        Ok(written)
    }

    /// Unmounts and removes the task's tmpfs, if it has one.
    pub fn remove(&self, task_id: &str) {
        let dir = self.dir(task_id);
        if !dir.exists() {
            return;
        }
        if let Ok(target) = cstring(&dir) {
            // SAFETY: a valid C string. EINVAL (not a mount point) is fine.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Removes the tmpfs of every task not in `keep` (after a crash or an upgrade).
    pub fn sweep(&self, keep: &std::collections::HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for e in entries.flatten() {
            let task = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(&task) {
                self.remove(&task);
            }
        }
    }
}

/// Where the process runtime can place a task's files: each of these is a tmpfs of the
/// task's own mount namespace (its mount point, an empty directory, made on the host).
pub const PROCESS_DIRS: [&str; 2] = [SECRETS_DIR, "/run/configs"];

/// The process runtime's files, made ready before the fork: everything the child needs
/// to write them into tmpfs mounts of its own mount namespace without allocating.
pub struct NamespaceFiles {
    mounts: Vec<(CString, CString)>,
    dirs: Vec<CString>,
    files: Vec<(CString, Vec<u8>, u32, u32, u32)>,
}

impl NamespaceFiles {
    /// Plans the mounts; refuses a file outside PROCESS_DIRS.
    pub fn plan(files: &[TaskFile]) -> Result<NamespaceFiles, RuntimeError> {
        let mut plan = NamespaceFiles {
            mounts: vec![],
            dirs: vec![],
            files: vec![],
        };
        let size = CString::new(format!("mode=0755,size={}", tmpfs_size(files))).expect("no NUL");
        for f in files {
            let root = process_dir(&f.path).ok_or_else(|| {
                RuntimeError::Rejected(format!(
                    "the process runtime runs tasks on the host's filesystem and places their files only under {}: give this config a target there (e.g. target=/run/configs/{}), or run the service with the docker runtime",
                    PROCESS_DIRS.join(" or "),
                    f.path.rsplit('/').next().unwrap_or_default()
                ))
            })?;
            let root_c = cstring(Path::new(root))?;
            if !plan.mounts.iter().any(|(m, _)| *m == root_c) {
                plan.mounts.push((root_c, size.clone()));
            }
            let path = Path::new(&f.path);
            for dir in path.ancestors().skip(1) {
                if dir == Path::new(root) {
                    break;
                }
                let dir = cstring(dir)?;
                if !plan.dirs.contains(&dir) {
                    plan.dirs.push(dir);
                }
            }
            plan.files
                .push((cstring(path)?, f.data.clone(), f.uid, f.gid, f.mode));
        }
        // Parents before children.
        plan.dirs.sort_by_key(|d| d.as_bytes().len());
        Ok(plan)
    }

    /// The host's empty mount points, made before the fork.
    pub fn make_mount_points(&self) -> Result<(), RuntimeError> {
        for (dir, _) in &self.mounts {
            let dir = Path::new(
                <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(dir.as_bytes()),
            );
            std::fs::create_dir_all(dir)
                .map_err(|e| RuntimeError::Failed(format!("making {}: {e}", dir.display())))?;
        }
        Ok(())
    }

    /// In the child, between fork and exec: a mount namespace of its own, the tmpfs
    /// mounts, the files, then the mounts made read-only.
    ///
    /// # Safety
    /// Only async-signal-safe calls: no allocation (everything was made in `plan`).
    pub unsafe fn apply(&self) -> std::io::Result<()> {
        if self.mounts.is_empty() {
            return Ok(());
        }
        let check = |rc: libc::c_int| {
            if rc < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(rc)
            }
        };
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        // SAFETY: system calls on C strings made before the fork.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            for (dir, options) in &self.mounts {
                check(libc::mount(
                    c"tmpfs".as_ptr(),
                    dir.as_ptr(),
                    c"tmpfs".as_ptr(),
                    flags,
                    options.as_ptr().cast(),
                ))?;
            }
            for dir in &self.dirs {
                if libc::mkdir(dir.as_ptr(), 0o755) < 0
                    && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (path, data, uid, gid, mode) in &self.files {
                let fd = check(libc::open(
                    path.as_ptr(),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                    0o600,
                ))?;
                let mut rest: &[u8] = data;
                while !rest.is_empty() {
                    let n = libc::write(fd, rest.as_ptr().cast(), rest.len());
                    if n < 0 {
                        let e = std::io::Error::last_os_error();
                        libc::close(fd);
                        return Err(e);
                    }
                    rest = &rest[n as usize..];
                }
                let owned = libc::fchown(fd, *uid, *gid) == 0 && libc::fchmod(fd, *mode) == 0;
                let e = std::io::Error::last_os_error();
                libc::close(fd);
                if !owned {
                    return Err(e);
                }
            }
            for (dir, _) in &self.mounts {
                check(libc::mount(
                    std::ptr::null(),
                    dir.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REMOUNT | libc::MS_RDONLY | flags,
                    std::ptr::null(),
                ))?;
            }
        }
        Ok(())
    }
}

/// Which of PROCESS_DIRS holds `path`.
pub fn process_dir(path: &str) -> Option<&'static str> {
    PROCESS_DIRS.into_iter().find(|root| {
        path.strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{ContainerSpec, FileTarget, Secret, SecretReference, SecretSpec, TaskSpec};

    #[test]
    fn a_task_gets_its_files_with_their_defaults_and_only_what_was_sent() {
        let task = Task {
            spec: Some(TaskSpec {
                container: Some(ContainerSpec {
                    secrets: vec![SecretReference {
                        secret_id: "s1".into(),
                        secret_name: "db".into(),
                        file: Some(FileTarget {
                            name: "db_password".into(),
                            uid: "7".into(),
                            ..Default::default()
                        }),
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let set = AssignmentSet {
            secrets: vec![Secret {
                id: "s1".into(),
                meta: None,
                spec: Some(SecretSpec {
                    data: b"hush".to_vec(),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        };
        let files = FileData::from_assignments(&set).for_task(&task).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].path, "/run/secrets/db_password");
        assert_eq!((files[0].uid, files[0].gid, files[0].mode), (7, 0, 0o444));
        assert_eq!(files[0].data, b"hush");
        assert!(!format!("{:?}", files[0]).contains("hush"));
        let err = FileData::default().for_task(&task).unwrap_err().to_string();
        assert!(err.contains("secret db was not sent"), "{err}");
    }
}
