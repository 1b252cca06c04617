//! `taskflow user ...`: user administration against the same database and
//! policy settings as `serve`, safe to run while the server runs; and
//! `taskflow auth ...`: the running server's policy, over the admin socket.

use std::io::{BufRead, IsTerminal};
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::admin;
use crate::config::{AuthCommand, SettingsArgs, UserCommand};
use crate::policy::{PolicyHandle, UserDirectory, UserRecord};
use crate::startup::open_database;

pub async fn user(settings: &SettingsArgs, command: UserCommand) -> anyhow::Result<()> {
    let db = open_database(settings).await?;
    match command {
        UserCommand::Add { username, scopes } => {
            check_username(&username)?;
            let scopes = parse_scopes(&scopes)?;
            let password = read_password()?;
            // The component hashes, so the hash is exactly what it will check.
            let policy = PolicyHandle::load(
                &settings.policy_config()?,
                settings.policy_settings()?,
                Arc::new(NoUsers),
            )?;
            let hash = policy.hash_password(password).await?;
            db.add_user(&username, &hash, &scopes).await?;
            println!("added user {username} with scopes [{}]", scopes.join(" "));
        }
        UserCommand::List => {
            for user in db.list_users().await? {
                println!("{}\t{}", user.username, user.scopes.join(" "));
            }
        }
        UserCommand::Remove { username } => {
            if !db.remove_user(&username).await? {
                bail!("no user named {username}");
            }
            println!("removed user {username} and their tasks");
        }
    }
    Ok(())
}

pub async fn auth(settings: &SettingsArgs, command: AuthCommand) -> anyhow::Result<()> {
    let command = match command {
        AuthCommand::Reload => "reload",
        AuthCommand::Status => "status",
    };
    let reply = admin::request(&settings.admin_socket(), command).await?;
    println!("{}", serde_json::to_string_pretty(&reply)?);
    if !reply.ok {
        bail!(
            "{}",
            reply
                .error
                .as_deref()
                .unwrap_or("the server refused the request")
        );
    }
    Ok(())
}

/// Usernames become a token's `sub`: printable, no spaces, 1 to 64 characters.
fn check_username(name: &str) -> anyhow::Result<()> {
    let ok = (1..=64).contains(&name.chars().count())
        && name.chars().all(|c| !c.is_whitespace() && !c.is_control());
    if !ok {
        bail!("a username is 1 to 64 characters, without spaces or control characters");
    }
    Ok(())
}

/// RFC 6749 §3.3 scope tokens, deduplicated, in the order given.
fn parse_scopes(scopes: &str) -> anyhow::Result<Vec<String>> {
    let mut parsed: Vec<String> = Vec::new();
    for scope in scopes.split_whitespace() {
        if !scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
        {
            bail!("scope {scope:?} has characters RFC 6749 does not allow");
        }
        if !parsed.iter().any(|s| s == scope) {
            parsed.push(scope.to_owned());
        }
    }
    Ok(parsed)
}

/// One line from stdin (the line break is not part of it); on a terminal,
/// prompts without echo.
fn read_password() -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Password: ").context("cannot read the password")?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let trimmed = line.strip_suffix('\n').unwrap_or(&line);
        trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned()
    };
    if password.is_empty() {
        bail!("the password must not be empty");
    }
    Ok(password)
}

/// `user add` only hashes; it never asks the policy to look anyone up.
struct NoUsers;

impl UserDirectory for NoUsers {
    fn find_user(&self, _: &str) -> Result<Option<UserRecord>, String> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(check_username("alice").is_ok());
        assert!(check_username("a@b.example").is_ok());
        for bad in ["", "a b", "a\nb", &"x".repeat(65)] {
            assert!(check_username(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scopes_are_checked_and_deduplicated() {
        assert_eq!(parse_scopes(" a  b a ").unwrap(), vec!["a", "b"]);
        assert!(parse_scopes("").unwrap().is_empty());
        assert!(parse_scopes("a\"b").is_err());
    }
}
