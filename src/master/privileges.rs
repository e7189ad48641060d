//! `--user` and `--group`: who the server serves as once its sockets are bound. Names (or
//! numbers) are resolved when the master starts, so an unknown user is an error before
//! anything is bound; the drop itself sets the supplementary groups, the group and the user,
//! in that order, and then checks that root cannot be regained.

use std::ffi::CString;

use nix::unistd::{self, Gid, Group, Uid, User};

/// The identity to serve as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// The user's name, for its supplementary groups (`initgroups`); `None`: only `gid`.
    user: Option<String>,
    /// As the operator wrote them, for messages.
    shown: String,
}

impl Credentials {
    /// Resolve `--user`/`--group` (names or numbers). `None` when neither is given. The
    /// group defaults to the user's primary group; a group alone keeps the user.
    pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Option<Credentials>, String> {
        if user.is_none() && group.is_none() {
            return Ok(None);
        }
        let found_user = match user {
            None => None,
            Some(u) => Some(find_user(u)?),
        };
        let gid = match group {
            Some(g) => find_group(g)?,
            None => found_user
                .as_ref()
                .map_or(unistd::getgid().as_raw(), |u| u.gid.as_raw()),
        };
        let uid = found_user
            .as_ref()
            .map_or(unistd::getuid().as_raw(), |u| u.uid.as_raw());
        let shown = match (user, group) {
            (Some(u), Some(g)) => format!("user {u}, group {g}"),
            (Some(u), None) => format!("user {u}"),
            (None, Some(g)) => format!("group {g}"),
            (None, None) => unreachable!("checked above"),
        };
        Ok(Some(Credentials {
            uid,
            gid,
            user: found_user.map(|u| u.name),
            shown,
        }))
    }

    /// Become these credentials. Whatever fails, the caller must not serve on.
    pub fn drop_privileges(&self) -> Result<(), String> {
        let fail = |what: &str, e: nix::Error| {
            format!("cannot drop privileges to {} ({what}: {e})", self.shown)
        };
        let gid = Gid::from_raw(self.gid);
        let uid = Uid::from_raw(self.uid);
        let root = unistd::geteuid().is_root();
        if root {
            match &self.user {
                Some(name) => {
                    let name = CString::new(name.as_str())
                        .map_err(|_| format!("user name `{name}` contains NUL"))?;
                    unistd::initgroups(&name, gid).map_err(|e| fail("initgroups", e))?;
                }
                None => unistd::setgroups(&[gid]).map_err(|e| fail("setgroups", e))?,
            }
        }
        if unistd::getgid() != gid || unistd::getegid() != gid {
            unistd::setgid(gid).map_err(|e| fail("setgid", e))?;
        }
        if unistd::getuid() != uid || unistd::geteuid() != uid {
            unistd::setuid(uid).map_err(|e| fail("setuid", e))?;
        }
        if unistd::getuid() != uid || unistd::geteuid() != uid || unistd::getegid() != gid {
            return Err(format!(
                "cannot drop privileges to {}: still uid {} gid {}",
                self.shown,
                unistd::geteuid(),
                unistd::getegid()
            ));
        }
        if self.uid != 0 && unistd::setuid(Uid::from_raw(0)).is_ok() {
            return Err(format!(
                "dropped to {} but root could be regained; refusing to serve",
                self.shown
            ));
        }
        Ok(())
    }

    /// `user NAME, group NAME` as given.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

fn find_user(name: &str) -> Result<User, String> {
    let found = match name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(name),
    };
    match found {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(format!("--user {name}: no such user")),
        Err(e) => Err(format!("--user {name}: cannot look it up: {e}")),
    }
}

fn find_group(name: &str) -> Result<u32, String> {
    let found = match name.parse::<u32>() {
        // A number need not name a group in /etc/group to be usable.
        Ok(gid) => return Ok(gid),
        Err(_) => Group::from_name(name),
    };
    match found {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => Err(format!("--group {name}: no such group")),
        Err(e) => Err(format!("--group {name}: cannot look it up: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_asked_is_nothing_to_do() {
        assert_eq!(Credentials::resolve(None, None), Ok(None));
    }

    #[test]
    fn unknown_names_are_errors_that_name_them() {
        let err = Credentials::resolve(Some("no-such-user-ringcorn"), None).expect_err("user");
        assert!(
            err.contains("no-such-user-ringcorn") && err.contains("no such user"),
            "{err}"
        );
        let err = Credentials::resolve(None, Some("no-such-group-ringcorn")).expect_err("group");
        assert!(err.contains("no such group"), "{err}");
    }

    #[test]
    fn root_resolves_by_name_and_number() {
        let by_name = Credentials::resolve(Some("root"), None)
            .expect("root")
            .expect("some");
        assert_eq!((by_name.uid, by_name.gid), (0, 0));
        let by_number = Credentials::resolve(Some("0"), Some("0"))
            .expect("0")
            .expect("some");
        assert_eq!((by_number.uid, by_number.gid), (0, 0));
    }
}
