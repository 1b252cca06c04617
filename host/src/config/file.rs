//! The optional TOML config file, the lowest layer under flags and
//! `TASKFLOW_*` variables, and the record of where each setting came from.
//!
//! The file's values become the command line's defaults, so clap applies the
//! precedence (flag, then variable, then default) and checks every value
//! with the same parser as a flag's.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, parser::ValueSource};

use super::{Cli, GlobalArgs, ServeArgs};

/// Why the command line or the config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A usage error, `--help` or `--version`: clap prints and exits.
    #[error(transparent)]
    Cli(#[from] clap::Error),
    #[error("config file {}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// Settings whose values make no sense, each named with its source.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

/// Where one setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Environment(String),
    File,
    Default,
}

/// The parsed command line, and where each setting came from.
#[derive(Debug)]
pub struct Loaded {
    pub cli: Cli,
    /// The settings in declaration order: name, value as given (if any), source.
    pub settings: Vec<(String, Option<String>, Source)>,
}

/// Parses the process's command line, environment and config file.
pub fn load() -> Result<Loaded, LoadError> {
    load_from(std::env::args_os())
}

/// Parses `args` (program name first) with the process's environment.
pub fn load_from<I, T>(args: I) -> Result<Loaded, LoadError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let first = Cli::command().try_get_matches_from(&args)?;
    let Some(path) = first.get_one::<PathBuf>("config").cloned() else {
        return finish(&first, &[], None);
    };
    let every_setting = all_settings();
    let mut defaults = Vec::new();
    for (key, value) in read_table(&path)? {
        let invalid = |message: String| LoadError::File {
            path: path.clone(),
            message,
        };
        let id = key.replace('-', "_");
        match id.as_str() {
            "config" => return Err(invalid("a config file cannot name another".into())),
            "jwt_secret" => {
                return Err(invalid(
                    "the signing secret is never read from the config file; name a file \
                     holding it with `jwt_secret_file`, or set TASKFLOW_JWT_SECRET"
                        .into(),
                ));
            }
            _ => {}
        }
        let Some(arg) = every_setting
            .get_arguments()
            .find(|a| a.get_id() == id.as_str())
        else {
            return Err(invalid(format!(
                "unknown setting `{key}`; known settings: {}",
                setting_ids().join(", ")
            )));
        };
        let text = value_text(&key, value, is_number(arg)).map_err(invalid)?;
        // The value goes through the option's own parser, so a bad one is
        // reported against the file rather than as a bad default.
        let flag = format!("--{}={text}", arg.get_long().unwrap_or(id.as_str()));
        clap::Command::new("taskflow")
            .arg(arg.clone())
            .try_get_matches_from(["taskflow", flag.as_str()])
            .map_err(|e| invalid(format!("`{key}`: {}", clap_message(&e))))?;
        defaults.push((id, text));
    }
    let matches = with_defaults(Cli::command(), &defaults).try_get_matches_from(&args)?;
    finish(&matches, &defaults, Some(&path))
}

/// `command` with the file's values as the defaults of the options it
/// and its subcommands take; one file serves every command, so a setting
/// a command does not take is left for the others.
fn with_defaults(mut command: clap::Command, defaults: &[(String, String)]) -> clap::Command {
    for (id, text) in defaults {
        if command.get_arguments().any(|a| a.get_id() == id.as_str()) {
            command = command.mut_arg(id.as_str(), |a| a.default_value(text.clone()));
        }
    }
    let names: Vec<String> = command
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, |sub| with_defaults(sub, defaults));
    }
    command
}

/// The matches of the command that runs (the deepest subcommand), which
/// hold its own options and, propagated, the global ones.
fn leaf(matches: &ArgMatches) -> &ArgMatches {
    match matches.subcommand() {
        Some((_, sub)) => leaf(sub),
        None => matches,
    }
}

fn finish(
    matches: &ArgMatches,
    defaults: &[(String, String)],
    file: Option<&Path>,
) -> Result<Loaded, LoadError> {
    let cli = Cli::from_arg_matches(matches)?;
    let from_file: BTreeSet<&str> = defaults.iter().map(|(id, _)| id.as_str()).collect();
    // Every setting, from the environment and the file: a command checks
    // those it does not take too, so a bad value is found by whichever
    // command runs first, not only by `serve`.
    let every = with_defaults(all_settings(), defaults).try_get_matches_from(["taskflow"])?;
    let command = all_settings();
    let matches = leaf(matches);
    let settings = setting_ids()
        .into_iter()
        .map(|id| {
            // The command's own value where it takes the setting (one it
            // takes but has no value for has none in `every` either).
            let matches = match matches.value_source(&id) {
                Some(_) => matches,
                None => &every,
            };
            let value = matches.get_raw(&id).map(|values| {
                values
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            });
            let source = match matches.value_source(&id) {
                Some(ValueSource::CommandLine) => Source::Flag,
                Some(ValueSource::EnvVariable) => Source::Environment(
                    command
                        .get_arguments()
                        .find(|a| a.get_id() == id.as_str())
                        .and_then(|a| a.get_env())
                        .map(|e| e.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ),
                _ if from_file.contains(id.as_str()) => Source::File,
                _ => Source::Default,
            };
            (id, value, source)
        })
        .collect();
    let every = ServeArgs::from_arg_matches(&every)?;
    let loaded = Loaded { cli, settings };
    check(&loaded, &every, file)?;
    Ok(loaded)
}

/// Refuses settings whose values make no sense together or alone
/// ([`super::cli::Given::problems`]), each named as it was given: the file and
/// key, the variable, or the flag. The command's own groups are checked as
/// it took them, the others as `every` (environment and file) has them.
fn check(loaded: &Loaded, every: &ServeArgs, file: Option<&Path>) -> Result<(), LoadError> {
    let problems: Vec<String> = loaded
        .cli
        .command
        .given()
        .or(every)
        .problems()
        .into_iter()
        .map(|(id, why)| {
            let (value, source) = loaded
                .settings
                .iter()
                .find(|(name, ..)| name == id)
                .map(|(_, value, source)| (value.clone().unwrap_or_default(), source.clone()))
                .unwrap_or((String::new(), Source::Default));
            let shown = toml::Value::String(value.clone()).to_string();
            match source {
                Source::File => format!(
                    "config file {}: `{id}` = {}: {why}",
                    file.map_or_else(String::new, |p| p.display().to_string()),
                    if value.parse::<i64>().is_ok() {
                        value
                    } else {
                        shown
                    }
                ),
                Source::Environment(variable) => format!("{variable}={value}: {why}"),
                Source::Flag => format!("--{} {value}: {why}", id.replace('_', "-")),
                Source::Default => format!("`{id}` (default {value}): {why}"),
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LoadError::Invalid(problems))
    }
}

/// Whether a setting takes a whole number.
fn is_number(arg: &clap::Arg) -> bool {
    use std::any::TypeId;
    let id = arg.get_value_parser().type_id();
    [
        TypeId::of::<u64>(),
        TypeId::of::<u32>(),
        TypeId::of::<usize>(),
        TypeId::of::<i64>(),
    ]
    .into_iter()
    .any(|t| id == t)
}

/// A file value as command-line text, if it has its setting's type: a
/// whole number for a number (`token_ttl = 900`, not `"900"`), a string
/// for everything else.
fn value_text(key: &str, value: toml::Value, number: bool) -> Result<String, String> {
    match (value, number) {
        (toml::Value::Integer(i), true) => Ok(i.to_string()),
        (toml::Value::String(s), false) => Ok(s),
        (toml::Value::String(s), true) => Err(match s.trim().parse::<u64>() {
            Ok(n) => format!(
                "`{key}` must be a whole number, written without quotes ({key} = {n}), not a string"
            ),
            Err(_) => format!(
                "`{key}` must be a whole number, not the string {}",
                toml::Value::String(s.clone())
            ),
        }),
        (
            value @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_)),
            false,
        ) => Err(format!(
            "`{key}` must be a string, in quotes ({key} = \"{value}\")"
        )),
        (toml::Value::Float(f), true) => Err(format!("`{key}` must be a whole number, not {f}")),
        (toml::Value::Boolean(b), true) => Err(format!("`{key}` must be a whole number, not {b}")),
        _ => Err(format!("`{key}` must be a string, number or boolean")),
    }
}

/// Every setting of every command, as `serve` takes them.
fn all_settings() -> clap::Command {
    ServeArgs::augment_args(GlobalArgs::augment_args(clap::Command::new("taskflow")))
}

/// The names of every setting, in declaration order.
fn setting_ids() -> Vec<String> {
    all_settings()
        .get_arguments()
        .filter(|a| !a.is_positional())
        .map(|a| a.get_id().to_string())
        .collect()
}

/// The file's top-level keys with their values.
fn read_table(path: &Path) -> Result<Vec<(String, toml::Value)>, LoadError> {
    let invalid = |message: String| LoadError::File {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        invalid(e.message().to_owned() + &line_of(&text, e.span()))
    })?;
    Ok(table.into_iter().collect())
}

fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|span| {
        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
        format!(" (line {line})")
    })
    .unwrap_or_default()
}

/// Clap's message for a bad value, without its `error: ` prefix and usage.
fn clap_message(e: &clap::Error) -> String {
    let rendered = e.to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_file(contents: &str, extra: &[&str]) -> Result<Loaded, LoadError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("taskflow.toml");
        std::fs::write(&path, contents).unwrap();
        let mut args = vec![
            "taskflow",
            "--config",
            path.to_str().unwrap(),
            "config",
            "show",
        ];
        args.extend_from_slice(extra);
        load_from(args)
    }

    fn source_of(loaded: &Loaded, id: &str) -> Source {
        loaded
            .settings
            .iter()
            .find(|(name, ..)| name == id)
            .unwrap()
            .2
            .clone()
    }

    #[test]
    fn file_values_apply_and_flags_win() {
        let loaded = with_file(
            "token_ttl = 600\nissuer = \"acme\"\nlog-format = \"json\"\n",
            &["--issuer", "flagged"],
        )
        .unwrap();
        let super::super::Command::Config(super::super::ConfigCommand::Show(settings)) =
            &loaded.cli.command
        else {
            panic!("not `config show`: {:?}", loaded.cli.command);
        };
        assert_eq!(settings.tokens.token_ttl, 600);
        assert_eq!(settings.tokens.issuer, "flagged");
        assert!(matches!(
            loaded.cli.global.log_format,
            super::super::LogFormat::Json
        ));
        assert_eq!(source_of(&loaded, "token_ttl"), Source::File);
        assert_eq!(source_of(&loaded, "issuer"), Source::Flag);
        assert_eq!(source_of(&loaded, "leeway"), Source::Default);
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let message = |contents: &str| with_file(contents, &[]).unwrap_err().to_string();
        assert!(message("no_such = 1").contains("unknown setting `no_such`"));
        assert!(message("token_ttl = \"soon\"").contains("`token_ttl`"));
        assert!(message("token_ttl = [1]").contains("string, number or boolean"));
        assert!(message("jwt_secret = \"x\"").contains("never read from the config file"));
        assert!(message("issuer = ").contains("line 1"));
        assert!(message("config = \"other.toml\"").contains("cannot name another"));
        // Each value has its setting's type, and a sensible value.
        assert!(message("token_ttl = \"900\"").contains(
            "`token_ttl` must be a whole number, written without quotes (token_ttl = 900)"
        ));
        assert!(message("issuer = 5").contains("`issuer` must be a string"));
        assert!(message("token_ttl = 1.5").contains("`token_ttl` must be a whole number"));
        let out_of_range = message("leeway = 61\ntoken_ttl = 0\n");
        assert!(out_of_range.contains("taskflow.toml: `leeway` = 61: must be at most 60"));
        assert!(out_of_range.contains("taskflow.toml: `token_ttl` = 0: must be between 1"));
    }

    #[test]
    fn out_of_range_values_are_named_as_given() {
        let loaded = |args: &[&str]| {
            let mut all = vec!["taskflow", "keys", "list"];
            all.extend_from_slice(args);
            load_from(all).map(|_| ()).unwrap_err().to_string()
        };
        assert!(loaded(&["--leeway", "61"]).contains("--leeway 61: must be at most 60 seconds"));
        assert!(loaded(&["--issuer", ""]).contains("--issuer : must not be empty"));
    }

    /// One file serves every command: each takes what it uses, leaves the
    /// rest, and still refuses a bad value among the rest.
    #[test]
    fn a_command_reads_its_settings_from_a_shared_file_and_checks_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("taskflow.toml");
        let load = |contents: &str| {
            std::fs::write(&path, contents).unwrap();
            load_from([
                "taskflow",
                "--config",
                path.to_str().unwrap(),
                "auth",
                "reload",
            ])
        };
        let loaded = load("listen = \"0.0.0.0:9\"\nadmin_socket = \"/run/tf.sock\"\n").unwrap();
        let super::super::Command::Auth(super::super::AuthCommand::Reload { admin }) =
            &loaded.cli.command
        else {
            panic!("not `auth reload`: {:?}", loaded.cli.command);
        };
        assert_eq!(
            admin.admin_socket.as_deref(),
            Some(Path::new("/run/tf.sock"))
        );
        let message = load("leeway = 61\n").unwrap_err().to_string();
        assert!(
            message.contains("`leeway` = 61: must be at most 60"),
            "{message}"
        );
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let error = load_from([
            "taskflow",
            "--config",
            "/nonexistent/t.toml",
            "config",
            "show",
        ])
        .unwrap_err();
        assert!(matches!(error, LoadError::File { .. }), "{error}");
    }
}
