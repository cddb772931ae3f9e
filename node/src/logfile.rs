//! A log file of bounded size: when it would grow past its limit it is renamed to
//! `<file>.1` (replacing the previous one) and a new file is started, so a daemon that
//! logs a lot (a flood of bad packets, a long run) keeps at most twice the limit on disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct RotatingFile {
    path: PathBuf,
    max: u64,
    open: Mutex<(File, u64)>,
}

impl RotatingFile {
    pub fn open(path: &Path, max: u64) -> io::Result<RotatingFile> {
        let file = append(path)?;
        let len = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            max,
            open: Mutex::new((file, len)),
        })
    }

    fn rotated(&self) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(".1");
        PathBuf::from(name)
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Write for &RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if open.1 > 0 && open.1 + buf.len() as u64 > self.max {
            std::fs::rename(&self.path, self.rotated())?;
            *open = (append(&self.path)?, 0);
        }
        let n = open.0.write(buf)?;
        open.1 += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_rotates_at_its_limit_and_keeps_one_old_file() {
        let dir = std::env::temp_dir().join(format!("shoal-logfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("daemon.log");
        let log = RotatingFile::open(&path, 100).unwrap();
        // As tracing writes: one whole line per call.
        for i in 0..50 {
            (&log)
                .write_all(format!("line {i:04} of the log\n").as_bytes())
                .unwrap();
        }
        let size = |p: &Path| std::fs::metadata(p).unwrap().len();
        assert!(size(&path) <= 100, "{}", size(&path));
        assert!(size(&log.rotated()) <= 100);
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(last.ends_with("line 0049 of the log\n"), "{last}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
