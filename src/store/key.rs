//! Object keys: the '/'-separated names both backends accept, and joining them onto a prefix.

use super::StoreError;

/// Suffix marker of a local file being written; such files are not objects.
pub(crate) const PARTIAL_MARKER: &str = ".partial-";

/// Checks an object key: non-empty, relative, no empty, `.` or `..` segments, no NUL. The same
/// rules hold for both backends so a key that works on a local store works on S3 and back.
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    let reason = if key.is_empty() {
        Some("the key is empty".to_owned())
    } else if key.starts_with('/') {
        Some("the key starts with '/'".to_owned())
    } else if key.ends_with('/') {
        Some("the key ends with '/'".to_owned())
    } else if key.contains('\0') {
        Some("the key contains a NUL byte".to_owned())
    } else {
        key.split('/').find_map(|segment| match segment {
            "" => Some("the key contains an empty segment ('//')".to_owned()),
            "." | ".." => Some(format!("the key contains a {segment:?} segment")),
            _ => None,
        })
    };
    match reason {
        Some(reason) => Err(StoreError::InvalidKey { key: key.to_owned(), reason }),
        None => Ok(()),
    }
}

/// Checks a listing prefix: may be empty or end with '/', but may not climb out of the store.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), StoreError> {
    let climbs = prefix.split('/').any(|segment| segment == "." || segment == "..");
    if prefix.starts_with('/') || prefix.contains('\0') || climbs {
        return Err(StoreError::InvalidKey {
            key: prefix.to_owned(),
            reason: "a listing prefix must be relative, without '.' or '..' segments".to_owned(),
        });
    }
    Ok(())
}

/// `base/key`, or `key` when the base is empty.
pub(crate) fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_owned()
    } else {
        format!("{base}/{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        for key in ["manifest.json", "set/2024/01/x-1/data.zst", "a b/c..d/.hidden"] {
            check_key(key).unwrap();
        }
    }

    #[test]
    fn rejects_keys_that_escape_or_are_ambiguous() {
        for key in ["", "/abs", "dir/", "a//b", "a/../b", "..", "./a", "a/.", "nul\0"] {
            assert!(matches!(check_key(key), Err(StoreError::InvalidKey { .. })), "{key:?}");
        }
    }

    #[test]
    fn prefixes() {
        for prefix in ["", "set/", "set/2024", "set/20"] {
            check_prefix(prefix).unwrap();
        }
        for prefix in ["../x", "/x", "a/../"] {
            assert!(check_prefix(prefix).is_err(), "{prefix:?}");
        }
    }

    #[test]
    fn joins() {
        assert_eq!(join("", "k"), "k");
        assert_eq!(join("p/q", "k"), "p/q/k");
        assert_eq!(join("p", ""), "p/");
    }
}
