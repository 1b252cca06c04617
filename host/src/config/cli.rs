//! The command tree. Each command takes only the option groups it uses
//! (see the sibling modules), so its `--help` lists what matters to it;
//! `--config`, `--data-dir` and `--log-format` are the only options every
//! command takes.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::admin::AdminArgs;
use super::limits::LimitArgs;
use super::listener::ListenerArgs;
use super::sandbox::{SandboxArgs, TrustArgs};
use super::storage::StorageArgs;
use super::tokens::{TokenArgs, parse_key_algorithm};
use crate::policy::KeyAlgorithm;

#[derive(Debug, Parser)]
#[command(
    name = "taskflow",
    version,
    about = "Task API whose authentication policy runs in a WebAssembly component",
    after_help = "Every option can also be set by its TASKFLOW_* variable or in the TOML file \
        named by --config, under its name with underscores (data_dir = \"/var/lib/taskflow\"). \
        A flag wins over a variable, a variable over the file; one file serves every command, \
        each reading the settings it uses.\n\
        The signing secret comes from TASKFLOW_JWT_SECRET, the file named by \
        --jwt-secret-file, or one generated in the data directory.",
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// What every command takes, before or after its name.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML file of settings, under the options' names with underscores.
    #[arg(long, env = "TASKFLOW_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Directory for the database, generated secret, admin socket and
    /// compiled-component cache.
    #[arg(
        long,
        env = "TASKFLOW_DATA_DIR",
        default_value = "./taskflow-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Log format.
    #[arg(
        long,
        env = "TASKFLOW_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (until SIGINT or SIGTERM).
    Serve(ServeArgs),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Roll the auth policy out to every replica, show, list and roll back revisions.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Manage the signing keys (shared by every replica on the database).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Show or check the effective settings.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// Every group: what `serve` uses, and what `config` shows and checks.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten, next_help_heading = "Listener")]
    pub listener: ListenerArgs,
    #[command(flatten, next_help_heading = "Storage")]
    pub storage: StorageArgs,
    #[command(flatten, next_help_heading = "Tokens")]
    pub tokens: TokenArgs,
    #[command(flatten, next_help_heading = "Sandbox")]
    pub sandbox: SandboxArgs,
    #[command(flatten, next_help_heading = "Limits")]
    pub limits: LimitArgs,
    #[command(flatten, next_help_heading = "Admin")]
    pub admin: AdminArgs,
}

/// What a command that loads the policy (to hash a password) needs:
/// the database, the token settings and the component.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(flatten, next_help_heading = "Storage")]
    pub storage: StorageArgs,
    #[command(flatten, next_help_heading = "Tokens")]
    pub tokens: TokenArgs,
    #[command(flatten, next_help_heading = "Sandbox")]
    pub sandbox: SandboxArgs,
}

/// The database alone.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    #[command(flatten, next_help_heading = "Storage")]
    pub storage: StorageArgs,
}

/// The database and the token settings: what the key ring needs.
#[derive(Debug, Args)]
pub struct KeyRingArgs {
    #[command(flatten, next_help_heading = "Storage")]
    pub storage: StorageArgs,
    #[command(flatten, next_help_heading = "Tokens")]
    pub tokens: TokenArgs,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a signing key; it signs after --key-activation-delay, and the
    /// key signing now is retired at that moment.
    Rotate {
        /// The new key's algorithm, HS256 or EdDSA [default: --signing-algorithm]
        #[arg(long, value_parser = parse_key_algorithm)]
        algorithm: Option<KeyAlgorithm>,
        #[command(flatten)]
        settings: KeyRingArgs,
    },
    /// List the keys that still verify, with their state; never their secrets.
    List {
        #[command(flatten)]
        settings: KeyRingArgs,
    },
    /// Stop a key signing now; tokens it signed stay valid until they expire.
    Retire {
        /// The key id, as `keys list` shows it.
        kid: String,
        #[command(flatten)]
        settings: KeyRingArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective settings and where each comes from, secrets masked.
    Show(ServeArgs),
    /// Check the settings, the signing secret, the database and the auth
    /// component (compiled and self-checked) without serving; exits non-zero
    /// on the first problem.
    Check(ServeArgs),
}

#[derive(Debug, Subcommand)]
#[command(
    after_help = "Policies roll out through the database: `deploy` stores a component \
    as a new revision and makes it desired, and every replica on the database verifies its \
    signature (with --component-trust), compiles it, self-checks it and swaps it in without \
    failing a request; a replica that refuses it keeps serving what it has and reports why \
    in `status`."
)]
pub enum AuthCommand {
    /// Store a component as a new revision and make it desired on every
    /// replica. Its minisign signature is read from FILE.minisig (or
    /// --signature) and stored with it.
    Deploy {
        /// The component (.wasm).
        file: PathBuf,
        /// Its detached minisign signature [default: FILE.minisig, if present].
        #[arg(long)]
        signature: Option<PathBuf>,
        /// What this revision is, for `auth history`.
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten, next_help_heading = "Storage")]
        storage: StorageArgs,
        #[command(flatten, next_help_heading = "Sandbox")]
        trust: TrustArgs,
    },
    /// Show the desired revision and what every replica serves, when it
    /// took over, what it last refused and why; replicas not heard from
    /// lately are marked stale.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        settings: DatabaseArgs,
    },
    /// List the stored revisions, newest first; the desired one is marked.
    History {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        settings: DatabaseArgs,
    },
    /// Make an earlier revision desired again, on every replica.
    Rollback {
        /// The revision, as `auth history` lists it [default: the one
        /// desired before the current one].
        revision: Option<i64>,
        #[command(flatten)]
        settings: DatabaseArgs,
    },
    /// Make the running server on this data directory load its component
    /// file (and FILE.minisig) again: it takes over on this replica only,
    /// until the next deploy, if it changed and passes its checks.
    Reload {
        #[command(flatten, next_help_heading = "Admin")]
        admin: AdminArgs,
    },
    /// Try a candidate on the live traffic of every replica without it
    /// answering anyone: `shadow FILE|REVISION` starts, `shadow status`
    /// shows how often it agreed, `shadow stop` ends it.
    Shadow(ShadowArgs),
    /// Make the shadowing candidate the desired revision on every replica,
    /// and end the shadow.
    Promote {
        #[command(flatten)]
        settings: DatabaseArgs,
    },
}

/// `taskflow auth shadow ...`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ShadowArgs {
    #[command(subcommand)]
    pub command: Option<ShadowCommand>,
    /// The candidate: a component file (stored as a new revision, with
    /// FILE.minisig), or a stored revision's number.
    #[arg(required = true, value_name = "FILE|REVISION")]
    pub candidate: Option<String>,
    /// The file's detached minisign signature [default: FILE.minisig, if present].
    #[arg(long)]
    pub signature: Option<PathBuf>,
    /// What the stored revision is, for `auth history`.
    #[arg(long, default_value = "")]
    pub note: String,
    #[command(flatten, next_help_heading = "Storage")]
    pub storage: StorageArgs,
    #[command(flatten, next_help_heading = "Sandbox")]
    pub trust: TrustArgs,
}

#[derive(Debug, Subcommand)]
pub enum ShadowCommand {
    /// End the shadow on every replica.
    Stop {
        #[command(flatten)]
        settings: DatabaseArgs,
    },
    /// Show the shadow and, per replica, how its decisions compared with
    /// the active policy's, and the most recent disagreements.
    Status {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        settings: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from standard input (one line).
    Add {
        /// The name the user logs in with, up to 64 characters; stored in
        /// RFC 8265's canonical form (lower case, NFC, usual width), and
        /// refused if it is another user's in that form.
        username: String,
        /// Space-separated scopes, e.g. "tasks:read tasks:write"; required,
        /// so that nobody is added who can do nothing by accident ("" adds
        /// a user without scopes on purpose).
        #[arg(long)]
        scopes: String,
        #[command(flatten)]
        settings: PolicyArgs,
    },
    /// List users and their scopes.
    List {
        #[command(flatten)]
        settings: DatabaseArgs,
    },
    /// Set a user's password (read from standard input, one line); every
    /// token issued to the user so far is revoked.
    Passwd {
        /// The user whose password changes.
        username: String,
        #[command(flatten)]
        settings: PolicyArgs,
    },
    /// Replace a user's scopes; their tokens keep only the scopes they still hold.
    Scopes {
        /// The user whose scopes change.
        username: String,
        /// Space-separated scopes, e.g. "tasks:read"; "" withdraws every scope.
        scopes: String,
        #[command(flatten)]
        settings: DatabaseArgs,
    },
    /// Remove a user and their tasks.
    Remove {
        /// The user to remove.
        username: String,
        #[command(flatten)]
        settings: DatabaseArgs,
    },
    /// Forget a username's failed logins, so a locked-out user (429
    /// `too_many_attempts`) can log in again at once: on every replica when
    /// the counts are shared (PostgreSQL), else in the running server's
    /// memory (SQLite, through its admin socket). Failures counted per
    /// client address stay.
    Unlock {
        /// The username, as it is typed at login (any spelling of it).
        username: String,
        #[command(flatten)]
        settings: DatabaseArgs,
        #[command(flatten, next_help_heading = "Admin")]
        admin: AdminArgs,
    },
}

/// The groups one command took; the others are `None`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Given<'a> {
    pub listener: Option<&'a ListenerArgs>,
    pub storage: Option<&'a StorageArgs>,
    pub tokens: Option<&'a TokenArgs>,
    pub sandbox: Option<&'a SandboxArgs>,
    pub trust: Option<&'a TrustArgs>,
    pub limits: Option<&'a LimitArgs>,
    pub admin: Option<&'a AdminArgs>,
}

impl ServeArgs {
    fn given(&self) -> Given<'_> {
        Given {
            listener: Some(&self.listener),
            storage: Some(&self.storage),
            tokens: Some(&self.tokens),
            sandbox: Some(&self.sandbox),
            trust: Some(&self.sandbox.trust),
            limits: Some(&self.limits),
            admin: Some(&self.admin),
        }
    }
}

impl PolicyArgs {
    fn given(&self) -> Given<'_> {
        Given {
            storage: Some(&self.storage),
            tokens: Some(&self.tokens),
            sandbox: Some(&self.sandbox),
            trust: Some(&self.sandbox.trust),
            ..Given::default()
        }
    }
}

impl KeyRingArgs {
    fn given(&self) -> Given<'_> {
        Given {
            storage: Some(&self.storage),
            tokens: Some(&self.tokens),
            ..Given::default()
        }
    }
}

impl DatabaseArgs {
    fn given(&self) -> Given<'_> {
        Given {
            storage: Some(&self.storage),
            ..Given::default()
        }
    }
}

impl Command {
    /// The option groups this command took.
    pub fn given(&self) -> Given<'_> {
        match self {
            Command::Serve(args) => args.given(),
            Command::Config(ConfigCommand::Show(args) | ConfigCommand::Check(args)) => args.given(),
            Command::User(
                UserCommand::Add { settings, .. } | UserCommand::Passwd { settings, .. },
            ) => settings.given(),
            Command::User(
                UserCommand::List { settings }
                | UserCommand::Scopes { settings, .. }
                | UserCommand::Remove { settings, .. },
            ) => settings.given(),
            Command::Keys(
                KeysCommand::Rotate { settings, .. }
                | KeysCommand::List { settings }
                | KeysCommand::Retire { settings, .. },
            ) => settings.given(),
            Command::Auth(AuthCommand::Deploy { storage, trust, .. }) => Given {
                storage: Some(storage),
                trust: Some(trust),
                ..Given::default()
            },
            Command::Auth(
                AuthCommand::Status { settings, .. }
                | AuthCommand::History { settings, .. }
                | AuthCommand::Rollback { settings, .. },
            ) => settings.given(),
            Command::Auth(AuthCommand::Reload { admin }) => Given {
                admin: Some(admin),
                ..Given::default()
            },
            Command::Auth(AuthCommand::Shadow(ShadowArgs {
                command: None,
                storage,
                trust,
                ..
            })) => Given {
                storage: Some(storage),
                trust: Some(trust),
                ..Given::default()
            },
            Command::Auth(
                AuthCommand::Shadow(ShadowArgs {
                    command:
                        Some(
                            ShadowCommand::Stop { settings }
                            | ShadowCommand::Status { settings, .. },
                        ),
                    ..
                })
                | AuthCommand::Promote { settings },
            ) => settings.given(),
            Command::User(UserCommand::Unlock {
                settings, admin, ..
            }) => Given {
                admin: Some(admin),
                ..settings.given()
            },
        }
    }
}

impl<'a> Given<'a> {
    /// These groups, and those of `every` where this has none.
    pub fn or(self, every: &'a ServeArgs) -> Given<'a> {
        Given {
            listener: self.listener.or(Some(&every.listener)),
            storage: self.storage.or(Some(&every.storage)),
            tokens: self.tokens.or(Some(&every.tokens)),
            sandbox: self.sandbox.or(Some(&every.sandbox)),
            trust: self.trust.or(Some(&every.sandbox.trust)),
            limits: self.limits.or(Some(&every.limits)),
            admin: self.admin.or(Some(&every.admin)),
        }
    }

    /// Every setting of these groups whose value makes no sense, by name,
    /// with why. Every command checks them as it starts
    /// ([`super::file::load`]), naming where each value came from.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if let Some(tokens) = self.tokens {
            problems.extend(tokens.problems());
        }
        if let Some(sandbox) = self.sandbox {
            problems.extend(sandbox.problems());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use clap::{Args, CommandFactory};

    use super::*;

    /// The long names of a group's options.
    fn longs<A: Args>() -> Vec<String> {
        A::augment_args(clap::Command::new("group"))
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_owned))
            .collect()
    }

    /// The command at `path` below `taskflow`, built as the binary builds it.
    fn command(path: &[&str]) -> clap::Command {
        let mut command = Cli::command();
        command.build();
        for name in path {
            command = command
                .find_subcommand(name)
                .unwrap_or_else(|| panic!("no command {path:?}"))
                .clone();
        }
        command
    }

    /// The groups each command should take.
    fn expected() -> Vec<(&'static str, &'static [&'static str])> {
        const ALL: &[&str] = &[
            "listener", "storage", "tokens", "sandbox", "trust", "limits", "admin",
        ];
        const POLICY: &[&str] = &["storage", "tokens", "sandbox", "trust"];
        const KEY_RING: &[&str] = &["storage", "tokens"];
        const DATABASE: &[&str] = &["storage"];
        vec![
            ("serve", ALL),
            ("config show", ALL),
            ("config check", ALL),
            ("user add", POLICY),
            ("user passwd", POLICY),
            ("user list", DATABASE),
            ("user scopes", DATABASE),
            ("user remove", DATABASE),
            ("user unlock", &["storage", "admin"]),
            ("keys rotate", KEY_RING),
            ("keys list", KEY_RING),
            ("keys retire", KEY_RING),
            ("auth deploy", &["storage", "trust"]),
            ("auth status", DATABASE),
            ("auth history", DATABASE),
            ("auth rollback", DATABASE),
            ("auth reload", &["admin"]),
            ("auth shadow", &["storage", "trust"]),
            ("auth promote", DATABASE),
        ]
    }

    /// Each command takes the groups it uses and none of the others, so
    /// its `--help` is about it: `auth reload` lists no HTTP, token or
    /// database option.
    #[test]
    fn each_command_takes_only_the_groups_it_uses() {
        let trust = longs::<TrustArgs>();
        let sandbox: Vec<String> = longs::<SandboxArgs>()
            .into_iter()
            .filter(|o| !trust.contains(o))
            .collect();
        let groups = [
            ("listener", longs::<ListenerArgs>()),
            ("storage", longs::<StorageArgs>()),
            ("tokens", longs::<TokenArgs>()),
            ("sandbox", sandbox),
            ("trust", trust),
            ("limits", longs::<LimitArgs>()),
            ("admin", longs::<AdminArgs>()),
        ];
        for (path, wanted) in expected() {
            let path: Vec<&str> = path.split(' ').collect();
            let command = command(&path);
            let taken: Vec<&str> = command
                .get_arguments()
                .filter_map(|a| a.get_long())
                .collect();
            for (group, options) in &groups {
                assert!(!options.is_empty(), "{group}");
                let present = options.iter().filter(|o| taken.contains(&o.as_str()));
                if wanted.contains(group) {
                    assert_eq!(present.count(), options.len(), "{path:?} lacks {group}");
                } else {
                    let present: Vec<_> = present.collect();
                    assert!(present.is_empty(), "{path:?} takes {present:?} ({group})");
                }
            }
        }
    }

    /// Every command is in [`expected`], so a new one gets its groups
    /// chosen rather than copied.
    #[test]
    fn every_command_is_listed() {
        let mut leaves = Vec::new();
        let root = command(&[]);
        for top in root.get_subcommands().filter(|c| c.get_name() != "help") {
            if top.get_subcommands().next().is_none() {
                leaves.push(top.get_name().to_owned());
            }
            for sub in top.get_subcommands().filter(|c| c.get_name() != "help") {
                leaves.push(format!("{} {}", top.get_name(), sub.get_name()));
            }
        }
        let listed: Vec<&str> = expected().into_iter().map(|(path, _)| path).collect();
        for leaf in &leaves {
            assert!(
                listed.contains(&leaf.as_str()),
                "{leaf} is not in expected()"
            );
        }
        assert_eq!(leaves.len(), listed.len(), "{leaves:?}");
    }

    #[test]
    fn auth_reload_help_is_short_and_about_it() {
        let help = command(&["auth", "reload"]).render_long_help().to_string();
        for absent in [
            "--listen",
            "--issuer",
            "--token-ttl",
            "--database-url",
            "--auth-component",
        ] {
            assert!(!help.contains(absent), "{absent} in\n{help}");
        }
        assert!(help.contains("--admin-socket"), "{help}");
        assert!(help.lines().count() < 40, "{help}");
    }
}
