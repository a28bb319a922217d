//! State codes in SQL. Statements name states and sets of states (`{available}`,
//! `{unfinished}`, `{waiting}`, `{finished}`) and get them rendered from the codes and
//! sets beside the state machine (`JobState::code`, `JobState::UNFINISHED`, ...), so no
//! statement spells a state code and no backend can disagree with the core about them.
//! Only the migrations' partial indexes spell them out (DDL is history); a test checks
//! those against the same sets.

use kairos_core::JobState;

/// A set of states as SQL writes it: `(0, 1, 2, 3)`.
pub(crate) fn set(states: &[JobState]) -> String {
    let codes: Vec<String> = states.iter().map(|s| s.code().to_string()).collect();
    format!("({})", codes.join(", "))
}

/// `sql` with every `{state}` and `{set}` placeholder replaced.
pub(crate) fn render(sql: &str) -> String {
    let mut out = sql
        .replace("{unfinished}", &set(&JobState::UNFINISHED))
        .replace("{waiting}", &set(&JobState::WAITING))
        .replace("{finished}", &set(&JobState::FINISHED));
    for s in JobState::ALL {
        out = out.replace(&format!("{{{}}}", s.as_str()), &s.code().to_string());
    }
    assert!(!out.contains('{'), "an unknown placeholder in {sql:?}");
    out
}

/// A statement with state placeholders, rendered once on first use.
macro_rules! statement {
    ($(#[$meta:meta])* $name:ident = $sql:expr) => {
        $(#[$meta])*
        pub(crate) static $name: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| $crate::states::render($sql));
    };
}
pub(crate) use statement;

/// Asserts that a backend's migrations spell the partial indexes' state sets as the core
/// has them (DDL is history, so it spells codes out), or the planner would not match them
/// to the statements that use them.
#[cfg(test)]
pub(crate) fn assert_partial_indexes_use_core_sets(ddl: &str) {
    for (index, clause) in [
        ("jobs_lease", "WHERE state = {available}"),
        ("jobs_due", "WHERE state IN {waiting}"),
        ("jobs_expiry", "WHERE state = {running}"),
        ("jobs_dead", "WHERE state = {dead}"),
        ("jobs_unique", "state IN {unfinished}"),
        ("jobs_schedule_open", "state IN {unfinished}"),
        ("jobs_finished", "WHERE state IN {finished}"),
    ] {
        let at = ddl.find(&format!("INDEX {index} ")).expect(index);
        let end = ddl[at..].find(';').unwrap() + at;
        assert!(
            ddl[at..end].contains(&render(clause)),
            "{index}: {}",
            &ddl[at..end]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_render_the_core_sets() {
        assert_eq!(
            render("state IN {unfinished} OR state IN {waiting} OR state = {dead}"),
            "state IN (0, 1, 2, 3) OR state IN (0, 3) OR state = 5"
        );
    }
}
