//! An error as one plain line for the operator: each cause once.
//!
//! Errors here often carry their cause twice: a `thiserror` message that
//! shows its source (`database error: {0}`) and also returns it as
//! `source()`, or a context that names what the cause names already
//! (`auth component X` over `auth component X: not WebAssembly`). Printed
//! as a chain (`{:#}`), each would be said twice.

/// `error` and its causes, outermost first, joined by `: `, leaving out a
/// cause its outer message already says and a context its cause repeats.
pub fn one_line(error: &anyhow::Error) -> String {
    join(error.chain().map(ToString::to_string))
}

fn join(messages: impl IntoIterator<Item = String>) -> String {
    let mut kept: Vec<String> = Vec::new();
    for message in messages {
        let message = message.trim().to_owned();
        match kept.last_mut() {
            _ if message.is_empty() => {}
            Some(outer) if outer.contains(&message) => {}
            Some(outer) if message.starts_with(outer.as_str()) => *outer = message,
            _ => kept.push(message),
        }
    }
    kept.join(": ")
}

#[cfg(test)]
mod tests {
    use super::join;

    fn chain(messages: &[&str]) -> String {
        join(messages.iter().map(|m| (*m).to_owned()))
    }

    #[test]
    fn a_cause_its_outer_message_shows_is_said_once() {
        assert_eq!(
            chain(&[
                "cannot open the database",
                "database error: pool timed out while waiting for an open connection",
                "pool timed out while waiting for an open connection",
            ]),
            "cannot open the database: database error: pool timed out while waiting for an open connection"
        );
    }

    #[test]
    fn a_context_its_cause_repeats_is_said_once() {
        assert_eq!(
            chain(&[
                "auth component /x.wasm",
                "auth component /x.wasm: cannot read the file: No such file or directory (os error 2)",
                "No such file or directory (os error 2)",
            ]),
            "auth component /x.wasm: cannot read the file: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn distinct_causes_are_all_kept() {
        assert_eq!(
            chain(&[
                "cannot listen on 127.0.0.1:80",
                "Permission denied (os error 13)"
            ]),
            "cannot listen on 127.0.0.1:80: Permission denied (os error 13)"
        );
    }
}
