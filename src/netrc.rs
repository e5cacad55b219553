//! Credentials from a netrc file (`--netrc`: `$NETRC` or `~/.netrc`; `--netrc-file FILE`), as curl
//! reads them: `machine`, `default`, `login`, `password`, `account` (ignored) and `macdef`
//! (skipped to the next blank line), with double-quoted words.
//!
//! Precedence is curl's: credentials in a URL win, then `--user` (or an `Authorization` header),
//! then netrc. Like `--user`, a netrc password goes as basic auth, which reqwest drops on a
//! redirect to another host or port. Passwords never appear in any output, not even `Debug`.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use reqwest::header::HeaderValue;
use url::Url;

/// One `machine` (or `default`, with no name) entry.
#[derive(Clone, PartialEq, Eq)]
struct Entry {
    machine: Option<String>,
    login: String,
    password: String,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}:***", self.machine, self.login)
    }
}

/// A parsed netrc file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Netrc {
    entries: Vec<Entry>,
}

impl Netrc {
    /// Parses netrc text. Never fails: like curl, words it does not know are skipped.
    pub(crate) fn parse(text: &str) -> Netrc {
        let mut words = Words::new(text);
        let mut entries: Vec<Entry> = Vec::new();
        let mut current: Option<Entry> = None;
        while let Some(word) = words.next() {
            match word.as_str() {
                "machine" | "default" => {
                    entries.extend(current.take());
                    let machine = if word == "machine" {
                        Some(words.next().unwrap_or_default().to_ascii_lowercase())
                    } else {
                        None
                    };
                    current = Some(Entry {
                        machine,
                        login: String::new(),
                        password: String::new(),
                    });
                }
                "login" | "password" | "account" => {
                    let value = words.next().unwrap_or_default();
                    if let Some(entry) = current.as_mut() {
                        match word.as_str() {
                            "login" => entry.login = value,
                            "password" => entry.password = value,
                            _ => {}
                        }
                    }
                }
                "macdef" => words.skip_macro(),
                _ => {}
            }
        }
        entries.extend(current);
        Netrc { entries }
    }

    /// Login and password for `host`: its first `machine` entry, else `default`.
    pub(crate) fn lookup(&self, host: &str) -> Option<(&str, &str)> {
        let host = host.to_ascii_lowercase();
        let entry = self
            .entries
            .iter()
            .find(|e| e.machine.as_deref() == Some(host.as_str()))
            .or_else(|| self.entries.iter().find(|e| e.machine.is_none()))?;
        if entry.login.is_empty() && entry.password.is_empty() {
            return None;
        }
        Some((&entry.login, &entry.password))
    }

    /// The `Authorization` value for `url`, unless the URL carries credentials of its own.
    pub(crate) fn authorization(&self, url: &Url) -> Option<HeaderValue> {
        if !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let (login, password) = self.lookup(url.host_str()?)?;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{login}:{password}"));
        let mut value = HeaderValue::from_str(&format!("Basic {token}")).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// Whitespace-separated words; a word in double quotes may hold spaces and `\"`.
struct Words<'a> {
    rest: &'a str,
}

impl<'a> Words<'a> {
    fn new(text: &'a str) -> Words<'a> {
        Words { rest: text }
    }

    /// After `macdef NAME`: the macro's lines, up to a blank line, are not netrc words.
    fn skip_macro(&mut self) {
        let _name = self.next();
        match self.rest.find("\n\n") {
            Some(end) => self.rest = &self.rest[end + 2..],
            None => self.rest = "",
        }
    }
}

impl Iterator for Words<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        self.rest = self.rest.trim_start();
        if self.rest.is_empty() {
            return None;
        }
        let mut word = String::new();
        if let Some(quoted) = self.rest.strip_prefix('"') {
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            word.push(match escaped {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                        }
                    }
                    other => word.push(other),
                }
            }
            self.rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = self
                .rest
                .find(char::is_whitespace)
                .unwrap_or(self.rest.len());
            word.push_str(&self.rest[..end]);
            self.rest = &self.rest[end..];
        }
        Some(word)
    }
}

/// Which netrc file `--netrc` means: `$NETRC`, else `~/.netrc`.
pub(crate) fn default_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(path) = env("NETRC").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    env("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| Path::new(&home).join(".netrc"))
}

/// Reads a netrc file. A missing file is an error only when `required` (`--netrc-file`). The
/// second value is a warning to show once, when others may read the file.
pub(crate) fn load(path: &Path, required: bool) -> Result<(Netrc, Option<String>), String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Netrc::default(), None))
        }
        Err(e) => {
            return Err(format!(
                "cannot read the netrc file {}: {e}",
                path.display()
            ))
        }
    };
    Ok((Netrc::parse(&text), readable_by_others(path)))
}

#[cfg(unix)]
fn readable_by_others(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "the netrc file {} can be read by other users: its passwords are not private \
             (chmod 600 {})",
            path.display(),
            path.display()
        )
    })
}

#[cfg(not(unix))]
fn readable_by_others(_: &Path) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
machine example.org login alice password \"open sesame\"
macdef init
cd /pub
machine fake login mallory password x

machine Files.Example.ORG
    login bob
    password b0b account ignored
default login anon password guest
";

    #[test]
    fn machines_then_default() {
        let netrc = Netrc::parse(SAMPLE);
        assert_eq!(netrc.lookup("example.org"), Some(("alice", "open sesame")));
        assert_eq!(netrc.lookup("files.example.org"), Some(("bob", "b0b")));
        assert_eq!(netrc.lookup("elsewhere"), Some(("anon", "guest")));
        // The macro's body is not an entry.
        assert_eq!(netrc.lookup("fake"), Some(("anon", "guest")));
        assert!(!format!("{netrc:?}").contains("sesame"));
    }

    #[test]
    fn no_default_means_nothing_for_others() {
        let netrc = Netrc::parse("machine a login u password p\n");
        assert_eq!(netrc.lookup("b"), None);
        assert_eq!(Netrc::parse("").lookup("a"), None);
        let quoted = Netrc::parse("machine a login \"u s\" password \"p\\\"q\"");
        assert_eq!(quoted.lookup("a"), Some(("u s", "p\"q")));
    }

    #[test]
    fn credentials_in_the_url_win() {
        let netrc = Netrc::parse("machine h login u password p");
        let plain = Url::parse("http://h:8080/f").unwrap();
        let value = netrc.authorization(&plain).unwrap();
        assert_eq!(value, "Basic dTpw");
        assert!(value.is_sensitive());
        let own = Url::parse("http://me:pw@h/f").unwrap();
        assert!(netrc.authorization(&own).is_none());
    }

    #[test]
    fn files_others_can_read_are_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netrc");
        std::fs::write(&path, "machine h login u password p\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let (_, warning) = load(&path, true).unwrap();
            assert!(warning.unwrap().contains("chmod 600"));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let (netrc, warning) = load(&path, true).unwrap();
        assert!(warning.is_none());
        assert!(netrc.lookup("h").is_some());
        assert!(load(&dir.path().join("none"), true).is_err());
        assert_eq!(
            load(&dir.path().join("none"), false).unwrap().0,
            Netrc::default()
        );
    }
}
