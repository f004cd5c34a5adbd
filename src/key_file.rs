//! Key files made on first start (the development JWT and audit signing keys): created once,
//! complete or not at all, even when several rowguard processes start at the same moment.
//! Touches only the file it is given and a private temporary name beside it.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The content of `path`, or, when it does not exist yet, `make()`'s output written there
/// (mode 0600). Two processes (or tests) starting together both end up with the one key the
/// first of them wrote: the new key is written in full under a private name and then linked
/// into place, and `link` fails when the name exists, so no reader ever sees a half-written
/// key and the loser reads the winner's instead of failing.
/// A new Ed25519 signing key as PKCS#8 PEM: what `read_or_create` makes for the development
/// keys (access tokens, audit checkpoints).
pub fn new_ed25519_pem() -> io::Result<String> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let pem = key.to_pkcs8_pem(Default::default()).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(pem.to_string())
}

pub fn read_or_create(path: &Path, make: impl FnOnce() -> io::Result<String>) -> io::Result<String> {
    if let Ok(text) = fs::read_to_string(path) {
        return Ok(text);
    }
    let content = make()?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp-{:016x}", rand::random::<u64>()));
    let temporary = Path::new(&name);
    let written = (|| {
        let mut f = fs::OpenOptions::new().create_new(true).write(true).mode(0o600).open(temporary)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
        fs::hard_link(temporary, path)
    })();
    let _ = fs::remove_file(temporary);
    match written {
        Ok(()) => Ok(content),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => fs::read_to_string(path),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_starting_together_all_get_the_first_key() {
        let dir = std::env::temp_dir().join(format!("rowguard-key-file-{:016x}", rand::random::<u64>()));
        let path = dir.join("key.pem");
        let keys: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let path = &path;
                    s.spawn(move || read_or_create(path, || Ok(format!("key {i}"))))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread").expect("read or create")).collect()
        });
        let on_disk = fs::read_to_string(&path).expect("the key file");
        assert!(keys.iter().all(|k| *k == on_disk), "{keys:?} vs {on_disk:?}");
        let leftovers = fs::read_dir(&dir).expect("dir").count();
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(leftovers, 1, "only the key file remains");
    }
}
