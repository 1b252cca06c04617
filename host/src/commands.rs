//! `taskflow user ...`: user administration against the same database and
//! policy settings as `serve`, safe to run while the server runs;
//! `taskflow auth ...`: policy revisions, in [`auth`];
//! `taskflow config ...`: the effective settings, shown or checked.

use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{Context, bail};

mod auth;
mod shadow;
use auth::auth;

use crate::admin;
use crate::config::admin::AdminArgs;
use crate::config::cli::PolicyArgs;
use crate::config::file::{Loaded, Source};
use crate::config::secret::stand_in_secret;
use crate::config::storage::StorageArgs;
use crate::config::{Command, ConfigCommand, KeysCommand, SecretSource, ServeArgs, UserCommand};
use crate::keys::{self, KeyRing};
use crate::login_limits::LoginLimiter;
use crate::policy::{Directory, DirectoryFuture, Lookup, PolicyHandle, TokenStatus, UserRecord};
use crate::startup::{self, open_database, open_existing_database};
use crate::storage::{Backend, Database};
use crate::throttle::LoginLimits;
use crate::username;

/// Runs the one command the binary was given.
///
/// Boxed, as [`crate::application::Application::build`] is: a crate that
/// awaits an `async fn` of this one compiles the whole tree of futures under
/// it again, and the binary would compile most of the server twice more
/// (as itself and as its unit-test harness).
#[inline(never)]
pub fn run(loaded: &Loaded) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + '_>> {
    let data_dir = &loaded.cli.global.data_dir;
    Box::pin(async move {
        match &loaded.cli.command {
            Command::Serve(settings) => startup::serve(data_dir, settings).await,
            Command::User(command) => user(data_dir, command).await,
            Command::Auth(command) => auth(data_dir, command).await,
            Command::Keys(command) => keys(data_dir, command).await,
            Command::Config(command) => config(loaded, command).await,
        }
    })
}

async fn user(data_dir: &Path, command: &UserCommand) -> anyhow::Result<()> {
    let db = match command {
        // Only `add` may create the database; the others need one that
        // exists, so that a mistyped `--data-dir` is reported, not made.
        UserCommand::Add { settings, .. } => open_database(data_dir, &settings.storage).await?,
        UserCommand::Passwd { settings, .. } => {
            open_existing_database(data_dir, &settings.storage).await?
        }
        UserCommand::List { settings }
        | UserCommand::Scopes { settings, .. }
        | UserCommand::Remove { settings, .. } => {
            open_existing_database(data_dir, &settings.storage).await?
        }
        UserCommand::Unlock {
            username,
            settings,
            admin,
        } => return unlock(data_dir, &settings.storage, admin, username).await,
    };
    match command {
        UserCommand::Add {
            username,
            scopes,
            settings,
        } => {
            let name = username::canonical(username)
                .with_context(|| format!("cannot add {}", username::printable(username)))?;
            let scopes = parse_scopes(scopes)?;
            if let Some(existing) = same_name(&db, &name).await? {
                bail!(
                    "user {} already exists, and {} is the same name (RFC 8265: names are compared \
                     in lower case, NFC, at their usual width)",
                    username::printable(&existing),
                    username::printable(username)
                );
            }
            let hash = hash_password(data_dir, settings, read_new_password()?).await?;
            db.add_user(&name, &hash, &scopes).await?;
            let given = if name == *username {
                String::new()
            } else {
                format!(" (given as {})", username::printable(username))
            };
            println!(
                "added user {name}{given} with scopes [{}]",
                scopes.join(" ")
            );
        }
        UserCommand::Passwd { username, settings } => {
            let name = existing_name(&db, username).await?;
            let hash = hash_password(data_dir, settings, read_new_password()?).await?;
            if db.set_password(&name, &hash).await?.is_none() {
                bail!("no user named {}", username::printable(username));
            }
            println!(
                "changed the password of {}; their earlier tokens are revoked",
                username::printable(&name)
            );
        }
        UserCommand::Scopes {
            username, scopes, ..
        } => {
            let scopes = parse_scopes(scopes)?;
            let name = existing_name(&db, username).await?;
            if !db.set_scopes(&name, &scopes).await? {
                bail!("no user named {}", username::printable(username));
            }
            println!(
                "set the scopes of {} to [{}]",
                username::printable(&name),
                scopes.join(" ")
            );
        }
        UserCommand::List { .. } => {
            let users = db.list_users().await?;
            for user in &users {
                let shown = username::printable(&user.username);
                let scopes = user.scopes.join(" ");
                match username::canonical(&user.username) {
                    Ok(canonical) if canonical == user.username => {
                        println!("{shown}\t{scopes}");
                    }
                    Ok(canonical) if users.iter().any(|u| u.username == canonical) => println!(
                        "{shown}\t{scopes}\t# not canonical (RFC 8265): cannot sign in, user {canonical} has its name"
                    ),
                    Ok(_) | Err(_) => println!(
                        "{shown}\t{scopes}\t# not canonical (RFC 8265): signs in only typed exactly as stored"
                    ),
                }
            }
        }
        UserCommand::Remove { username, .. } => {
            let name = existing_name(&db, username).await?;
            if !db.remove_user(&name).await? {
                bail!("no user named {}", username::printable(username));
            }
            println!(
                "removed user {} and their tasks",
                username::printable(&name)
            );
        }
        UserCommand::Unlock { .. } => unreachable!("answered above"),
    }
    Ok(())
}

/// `user unlock`: forgets a username's failed logins where they are
/// counted. On PostgreSQL that is the database, shared by every replica;
/// on SQLite, the memory of the server on this data directory, reached
/// through its admin socket.
async fn unlock(
    data_dir: &Path,
    storage: &StorageArgs,
    admin: &AdminArgs,
    given: &str,
) -> anyhow::Result<()> {
    // Counted as `/token` counts them: every spelling under one name.
    let name = username::canonical(given).unwrap_or_else(|_| given.to_owned());
    let shown = username::printable(&name);
    let forgotten = match Backend::of(&storage.database_url(data_dir))? {
        Backend::Postgres => {
            let db = open_existing_database(data_dir, storage).await?;
            // The limits themselves play no part in forgetting.
            LoginLimiter::for_database(&db, LoginLimits::default())
                .unlock(&name)
                .await?
        }
        Backend::Sqlite => {
            let socket = admin.socket(data_dir);
            if !socket.exists() {
                println!(
                    "no server is running on {}: on SQLite failed logins are counted in the server's memory, \
                     so {shown} has none to forget",
                    data_dir.display()
                );
                return Ok(());
            }
            let reply = admin::request(&socket, &format!("unlock {name}")).await?;
            match (reply.ok, reply.forgotten) {
                (true, Some(forgotten)) => forgotten,
                _ => bail!(
                    "the server did not unlock {shown}: {}",
                    reply.error.as_deref().unwrap_or("no reason given")
                ),
            }
        }
    };
    println!("unlocked {shown}: forgot {forgotten} failed logins; they may log in at once");
    Ok(())
}

/// The stored user whose name is `canonical` once made canonical: the
/// same name, or one stored before names were made canonical.
async fn same_name(db: &Database, canonical: &str) -> anyhow::Result<Option<String>> {
    Ok(db
        .list_users()
        .await?
        .into_iter()
        .map(|u| u.username)
        .find(|stored| {
            stored == canonical || username::canonical(stored).is_ok_and(|c| c == canonical)
        }))
}

/// The stored name an administrative command means by `given`: exactly
/// `given` if a user has that name (so a name stored before names were
/// made canonical can still be named), else its canonical form.
async fn existing_name(db: &Database, given: &str) -> anyhow::Result<String> {
    if db.find_user(given).await?.is_some() {
        return Ok(given.to_owned());
    }
    if let Ok(canonical) = username::canonical(given)
        && db.find_user(&canonical).await?.is_some()
    {
        return Ok(canonical);
    }
    bail!("no user named {}", username::printable(given))
}

async fn keys(data_dir: &Path, command: &KeysCommand) -> anyhow::Result<()> {
    let (KeysCommand::Rotate { settings, .. }
    | KeysCommand::List { settings }
    | KeysCommand::Retire { settings, .. }) = command;
    let tokens = &settings.tokens;
    // The secret unseals the stored keys and seals new ones; only `serve`
    // creates it, so that every key is sealed under the server's secret.
    let secret = tokens.required_master_secret(data_dir)?;
    let db = match command {
        KeysCommand::Rotate { .. } => open_database(data_dir, &settings.storage).await?,
        KeysCommand::List { .. } | KeysCommand::Retire { .. } => {
            open_existing_database(data_dir, &settings.storage).await?
        }
    };
    let ring = KeyRing::new(db, secret, tokens.key_timings());
    let now = crate::clock::unix_now();
    match command {
        KeysCommand::Rotate { algorithm, .. } => {
            let algorithm = algorithm.unwrap_or(tokens.signing_algorithm);
            let added = ring.rotate(now, algorithm).await?;
            println!(
                "added {} key {}: it signs from {} on ({} s from now); the key signing until then is retired at that moment",
                added.algorithm,
                added.kid,
                rfc3339(added.activates_at),
                added.activates_at - now
            );
        }
        KeysCommand::List { .. } => {
            let keys = ring.status(now).await?;
            println!("KID\tALG\tSTATE\tCREATED\tSIGNS FROM\tVERIFIES UNTIL");
            for key in keys {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    key.kid,
                    key.algorithm,
                    key.state,
                    rfc3339(key.created_at),
                    // The key made from the signing secret signs from the
                    // first start on, not from a date.
                    if key.activates_at == 0 {
                        "first start".to_owned()
                    } else {
                        rfc3339(key.activates_at)
                    },
                    key.verifies_until.map_or_else(|| "-".to_owned(), rfc3339)
                );
            }
        }
        KeysCommand::Retire { kid, .. } => match ring.retire(kid, now).await? {
            keys::Retired::Signing => println!(
                "retired key {kid}: it signs no more; its tokens stay valid until they expire"
            ),
            keys::Retired::Pending => println!(
                "retired pending key {kid}: it will never sign; the key signing now goes on signing"
            ),
        },
    }
    Ok(())
}

/// Unix seconds as RFC 3339 (UTC).
fn rfc3339(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| seconds.to_string())
}

async fn config(loaded: &Loaded, command: &ConfigCommand) -> anyhow::Result<()> {
    let data_dir = &loaded.cli.global.data_dir;
    match command {
        ConfigCommand::Show(settings) => {
            print!("{}", show_settings(loaded, data_dir, settings));
            Ok(())
        }
        ConfigCommand::Check(settings) => check_settings(data_dir, settings).await,
    }
}

/// The effective settings as a TOML file would hold them, each with its
/// source; unset paths show what they default to. Passwords in the
/// database URL are masked, and the signing secret is named, never shown.
fn show_settings(loaded: &Loaded, data_dir: &Path, settings: &ServeArgs) -> String {
    let mut out = String::from(
        "# Effective settings: a flag wins over a TASKFLOW_* variable, which wins over\n\
         # the config file, which wins over the default.\n",
    );
    for (name, value, source) in &loaded.settings {
        let derived = match name.as_str() {
            "database_url" => Some(settings.storage.database_url(data_dir)),
            "auth_component" => Some(settings.sandbox.component().display().to_string()),
            "component_cache_dir" => {
                Some(settings.sandbox.cache_dir(data_dir).display().to_string())
            }
            "admin_socket" => Some(settings.admin.socket(data_dir).display().to_string()),
            "max_connections_per_address" => Some(
                settings
                    .limits
                    .connection_limits()
                    .max_connections_per_address
                    .unwrap_or(0)
                    .to_string(),
            ),
            _ => None,
        };
        let source = match source {
            Source::Flag => "flag".to_owned(),
            Source::Environment(variable) => format!("environment, {variable}"),
            Source::File => "config file".to_owned(),
            Source::Default if value.is_none() && derived.is_some() => {
                "default, derived".to_owned()
            }
            Source::Default => "default".to_owned(),
        };
        match value.clone().or(derived) {
            Some(value) => {
                let value = if name == "database_url" {
                    mask_password(&value)
                } else {
                    value
                };
                out += &format!("{name} = {}  # {source}\n", toml_value(&value));
            }
            None => out += &format!("# {name} is not set\n"),
        }
    }
    let secret = settings.tokens.secret_source(data_dir);
    let state = match &secret {
        SecretSource::Generated(path) if !path.exists() => " (created at first start)",
        _ => "",
    };
    out += &format!("# signing secret: from {secret}{state}\n");
    out
}

/// What `serve` would need, checked without serving: settings, secret,
/// database, component. Prints a line per check. Writes nothing: no data
/// directory, no secret, no compiled component (it is compiled in memory
/// only, so the check does not read a cached copy either).
async fn check_settings(data_dir: &Path, settings: &ServeArgs) -> anyhow::Result<()> {
    let tokens = &settings.tokens;
    let mut config = settings.sandbox.policy_config(data_dir)?;
    config.cache_dir = None;
    for removed in settings.storage.removed_settings() {
        println!("warning: {removed}");
    }
    for warning in tokens.warnings() {
        println!("warning: {warning}");
    }
    let listener = &settings.listener;
    println!("ok: public URL {}", listener.public_url(listener.listen)?);
    let secret = tokens.existing_signing_secret(data_dir)?;
    match &secret {
        Some(secret) => println!(
            "ok: signing secret from {} ({} bytes)",
            tokens.secret_source(data_dir),
            secret.len()
        ),
        None => println!(
            "ok: signing secret will be generated: {}",
            tokens.secret_source(data_dir)
        ),
    }
    let secret = secret.map_or_else(stand_in_secret, Ok)?;
    let policy_settings = tokens.policy_settings_with(secret)?;
    println!(
        "ok: tokens from issuer {:?} for audience {:?}, valid {} s",
        policy_settings.issuer,
        policy_settings.audience,
        policy_settings.token_ttl.as_secs()
    );
    let url = settings.storage.database_url(data_dir);
    let database = Database::probe(&url)
        .await
        .with_context(|| format!("database {}", mask_password(&url)))?;
    println!("ok: database {} ({database})", mask_password(&url));
    let policy = PolicyHandle::load(&config, policy_settings, Arc::new(NoUsers))
        .await
        .with_context(|| format!("auth component {}", config.component.display()))?;
    let info = policy.info();
    if let Some(trust) = policy.trust() {
        println!(
            "ok: auth component signed by a key of {} ({} trusted)",
            trust.path().display(),
            trust.len()
        );
    }
    println!(
        "ok: auth component {} {} ({}), sha256 {}: compiled and self-checked",
        info.name,
        info.version,
        info.path.display(),
        info.sha256
    );
    Ok(())
}

/// `scheme://user:password@host/...` with the password replaced by `****`.
fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let masked = if userinfo.contains(':') {
                format!("{user}:****")
            } else {
                user.to_owned()
            };
            let query_masked = mask_query_password(path);
            format!("{scheme}://{masked}@{host}{query_masked}")
        }
        None => format!("{scheme}://{authority}{}", mask_query_password(path)),
    }
}

/// `?password=...` in a URL's query, masked too.
fn mask_query_password(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=****"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// A whole number as a TOML integer, anything else as a TOML string.
fn toml_value(value: &str) -> String {
    if value.parse::<i64>().is_ok() {
        value.to_owned()
    } else {
        toml::Value::String(value.to_owned()).to_string()
    }
}

/// Hashes with the configured component, so the hash is exactly what it
/// will check at `/token`. Hashing signs nothing, so a secret still to be
/// generated by `serve` is stood in for, not created here.
async fn hash_password(
    data_dir: &Path,
    settings: &PolicyArgs,
    password: String,
) -> anyhow::Result<String> {
    let secret = match settings.tokens.existing_signing_secret(data_dir)? {
        Some(secret) => secret,
        None => stand_in_secret()?,
    };
    let policy = PolicyHandle::load(
        &settings.sandbox.policy_config(data_dir)?,
        settings.tokens.policy_settings_with(secret)?,
        Arc::new(NoUsers),
    )
    .await?;
    Ok(policy.hash_password(password).await?)
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

/// A new password: one line from stdin, at least
/// [`username::MIN_PASSWORD_CHARS`] characters.
fn read_new_password() -> anyhow::Result<String> {
    let password = read_password()?;
    username::check_password(&password).map_err(anyhow::Error::msg)?;
    Ok(password)
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
pub(crate) struct NoUsers;

impl Directory for NoUsers {
    fn find_user<'a>(&'a self, _: &'a str, _: Lookup) -> DirectoryFuture<'a, Option<UserRecord>> {
        Box::pin(async { Ok(None) })
    }

    fn token_status<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: u64,
    ) -> DirectoryFuture<'a, TokenStatus> {
        Box::pin(async {
            Ok(TokenStatus {
                revoked: false,
                user: None,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_masked() {
        assert_eq!(
            mask_password("postgres://tf:s3cret@db:5432/tf?sslmode=require"),
            "postgres://tf:****@db:5432/tf?sslmode=require"
        );
        assert_eq!(
            mask_password("postgres://db/tf?user=tf&password=s3cret"),
            "postgres://db/tf?user=tf&password=****"
        );
        assert_eq!(mask_password("postgres://tf@db/tf"), "postgres://tf@db/tf");
        assert_eq!(
            mask_password("sqlite://./data/t.db"),
            "sqlite://./data/t.db"
        );
    }

    #[test]
    fn shown_values_are_toml() {
        assert_eq!(toml_value("1800"), "1800");
        for text in ["a \"b\"", "it's", "C:\\data", "127.0.0.1:8080"] {
            let table: toml::Table = format!("k = {}", toml_value(text)).parse().unwrap();
            assert_eq!(table["k"].as_str(), Some(text));
        }
    }

    #[test]
    fn scopes_are_checked_and_deduplicated() {
        assert_eq!(parse_scopes(" a  b a ").unwrap(), vec!["a", "b"]);
        assert!(parse_scopes("").unwrap().is_empty());
        assert!(parse_scopes("a\"b").is_err());
    }
}
