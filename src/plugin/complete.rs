//! `kubectl_complete-consent`: what kubectl's own shell completion runs for `kubectl consent ...`
//! (kubectl 1.26 and later look for it on the PATH). kubectl passes the words after `consent`,
//! the last being the one under the cursor (empty for a new word), and reads one candidate a
//! line, then Cobra's directive (`:4`, no file names). The plugin binary answers when it is run
//! under that name (a link to it): the verbs and flags come from the same command definition
//! as `--help`, and ConsentToken and namespace names from the cluster, as kubectl completes
//! its own resources.

use clap::CommandFactory;
use kube::api::{ListParams, PartialObjectMeta};
use kube::{Api, Client};

use super::Cli;
use crate::api::crd::ConsentToken;

/// The name kubectl looks for.
pub const COMPLETER: &str = "kubectl_complete-consent";

/// Cobra's `ShellCompDirectiveNoFileComp`: the shell offers no file names instead.
const NO_FILES: &str = ":4";

/// Where the cursor is, read from the words before it.
#[derive(Debug, PartialEq, Eq)]
pub enum Slot {
    /// A verb (`status`, `refresh`, ...).
    Verb,
    /// A flag of this verb (or a global one).
    Flag,
    /// The value of a flag with these possible values.
    Value(Vec<String>),
    /// A namespace name (`-n`).
    Namespace,
    /// A ConsentToken name (the argument of `status`, `refresh`, `inspect`).
    ConsentToken,
    /// Nothing to offer.
    Nothing,
}

/// What the words before the cursor say: the verb's path, the flags given (`--flag value`),
/// and what the word under the cursor is.
#[derive(Debug, PartialEq, Eq)]
pub struct Position {
    pub verbs: Vec<String>,
    pub flags: Vec<(String, String)>,
    pub slot: Slot,
    pub typed: String,
}

/// Reads `words` (the last one being typed) against the plugin's command definition. Pure.
pub fn position(words: &[String]) -> Position {
    let root = Cli::command();
    let (typed, before) = match words.split_last() {
        Some((last, before)) => (last.clone(), before),
        None => (String::new(), &[][..]),
    };
    let mut command = &root;
    let mut verbs = Vec::new();
    let mut flags = Vec::new();
    let mut pending: Option<String> = None;
    for word in before {
        if let Some(flag) = pending.take() {
            flags.push((flag, word.clone()));
            continue;
        }
        if let Some(flag) = word.strip_prefix('-') {
            let (name, inline) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (flag, None),
            };
            let name = name.trim_start_matches('-');
            let takes_value = find_arg(command, &root, name).is_some_and(|a| a.get_action().takes_values());
            match (takes_value, inline) {
                (true, None) => pending = Some(long_name(command, &root, name)),
                (true, Some(value)) => flags.push((long_name(command, &root, name), value.to_owned())),
                (false, _) => {}
            }
            continue;
        }
        if let Some(sub) = command.find_subcommand(word) {
            verbs.push(sub.get_name().to_owned());
            command = sub;
        }
    }
    let slot = if let Some(flag) = pending {
        match flag.as_str() {
            "namespace" => Slot::Namespace,
            _ => Slot::Value(
                find_arg(command, &root, &flag)
                    .map(|a| a.get_possible_values().iter().map(|v| v.get_name().to_owned()).collect())
                    .unwrap_or_default(),
            ),
        }
    } else if typed.starts_with('-') {
        Slot::Flag
    } else if command.has_subcommands() {
        Slot::Verb
    } else if let Some(values) = command
        .get_positionals()
        .map(|a| a.get_possible_values().iter().map(|v| v.get_name().to_owned()).collect::<Vec<_>>())
        .find(|values| !values.is_empty())
    {
        Slot::Value(values)
    } else if matches!(verbs.first().map(String::as_str), Some("status" | "refresh" | "inspect")) {
        Slot::ConsentToken
    } else {
        Slot::Nothing
    };
    Position { verbs, flags, slot, typed }
}

/// The argument `name` (long, or a one-letter short) of `command`, or a global one of `root`.
fn find_arg<'a>(command: &'a clap::Command, root: &'a clap::Command, name: &str) -> Option<&'a clap::Arg> {
    let matches = |a: &&clap::Arg| {
        a.get_long() == Some(name)
            || (name.chars().count() == 1 && a.get_short().map(String::from).as_deref() == Some(name))
    };
    command.get_arguments().find(matches).or_else(|| root.get_arguments().find(matches))
}

fn long_name(command: &clap::Command, root: &clap::Command, name: &str) -> String {
    find_arg(command, root, name).and_then(|a| a.get_long()).unwrap_or(name).to_owned()
}

/// The candidates that need no cluster: verbs, flags, flag values.
pub fn static_candidates(position: &Position) -> Vec<String> {
    let root = Cli::command();
    let mut command = &root;
    for verb in &position.verbs {
        if let Some(sub) = command.find_subcommand(verb) {
            command = sub;
        }
    }
    let all: Vec<String> = match &position.slot {
        Slot::Verb => command
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name().to_owned())
            .chain(std::iter::once("help".to_owned()))
            .collect(),
        Slot::Flag => command
            .get_arguments()
            .chain(root.get_arguments().filter(|a| a.is_global_set()))
            .filter(|a| !a.is_hide_set())
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .chain(std::iter::once("--help".to_owned()))
            .collect(),
        Slot::Value(values) => values.clone(),
        Slot::Namespace | Slot::ConsentToken | Slot::Nothing => Vec::new(),
    };
    let mut candidates: Vec<String> = all.into_iter().filter(|c| c.starts_with(&position.typed)).collect();
    candidates.sort();
    candidates.dedup();
    candidates
}

/// Prints the candidates for `words` and the directive. A cluster that does not answer gives
/// no names, never an error: a completion must not print one.
pub async fn complete(words: &[String], out: &mut impl std::io::Write) -> std::io::Result<()> {
    let position = position(words);
    let mut candidates = static_candidates(&position);
    if matches!(position.slot, Slot::Namespace | Slot::ConsentToken) {
        candidates = names(&position).await.unwrap_or_default();
    }
    for candidate in candidates {
        writeln!(out, "{candidate}")?;
    }
    writeln!(out, "{NO_FILES}")
}

/// Namespace or ConsentToken names starting with what is typed, from the cluster the flags name.
async fn names(position: &Position) -> Option<Vec<String>> {
    let flag = |name: &str| position.flags.iter().rev().find(|(f, _)| f == name).map(|(_, v)| v.as_str());
    let path = flag("kubeconfig").map(std::path::Path::new);
    let config = super::client_config(path, flag("context")).await.ok()?;
    let namespace = flag("namespace").map_or_else(|| config.default_namespace.clone(), str::to_owned);
    let client = Client::try_from(config).ok()?;
    let list = ListParams::default();
    let found: Vec<String> = match position.slot {
        Slot::Namespace => {
            let api: Api<PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>> = Api::all(client);
            api.list_metadata(&list).await.ok()?.items.into_iter().filter_map(|n| n.metadata.name).collect()
        }
        _ => {
            let api: Api<ConsentToken> = Api::namespaced(client, &namespace);
            api.list_metadata(&list).await.ok()?.items.into_iter().filter_map(|t| t.metadata.name).collect()
        }
    };
    Some(found.into_iter().filter(|n| n.starts_with(&position.typed)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(words: &[&str]) -> Position {
        position(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn verbs_flags_and_values_come_from_the_command_definition() {
        let verbs = static_candidates(&at(&[""]));
        for verb in ["status", "refresh", "inspect", "check", "version", "completion"] {
            assert!(verbs.contains(&verb.to_owned()), "{verbs:?}");
        }
        assert_eq!(static_candidates(&at(&["re"])), ["refresh"]);
        let flags = static_candidates(&at(&["status", "--"]));
        for flag in
            ["--output", "--providers", "--namespace", "--all-namespaces", "--selector", "--kubeconfig", "--context"]
        {
            assert!(flags.contains(&flag.to_owned()), "{flags:?}");
        }
        assert_eq!(static_candidates(&at(&["status", "-o", ""])), ["json", "wide", "yaml"]);
        assert_eq!(static_candidates(&at(&["status", "--output", "y"])), ["yaml"]);
        assert_eq!(static_candidates(&at(&["completion", "z"])), ["zsh"]);
    }

    #[test]
    fn names_are_asked_for_where_a_verb_takes_one_and_flags_are_read_with_their_values() {
        let position = at(&["--context", "prod", "refresh", "-n", "payments", "cu"]);
        assert_eq!(position.slot, Slot::ConsentToken);
        assert_eq!(position.typed, "cu");
        assert_eq!(
            position.flags,
            [("context".to_owned(), "prod".to_owned()), ("namespace".to_owned(), "payments".to_owned())]
        );
        assert_eq!(at(&["status", "-n", ""]).slot, Slot::Namespace);
        assert_eq!(at(&["status", "--namespace=pay", "a"]).flags, [("namespace".to_owned(), "pay".to_owned())]);
        assert_eq!(at(&["check", ""]).slot, Slot::Nothing);
    }
}
