//! How a task ended, as the label every part of this crate uses.

use respool::observe::EventKind;

/// Outcome label values (`EventKind::name` of each terminal kind), in the
/// order of [`outcome_index`].
pub(crate) const OUTCOMES: [&str; 8] = [
    "finished",
    "failed",
    "panicked",
    "cancelled",
    "timed_out",
    "deadline_missed",
    "refused",
    "not_run",
];

/// The index in [`OUTCOMES`] of a terminal event (`None` for the others).
pub(crate) fn outcome_index(k: &EventKind<'_>) -> Option<usize> {
    Some(match k {
        EventKind::Finished { .. } => 0,
        EventKind::Failed { .. } => 1,
        EventKind::Panicked => 2,
        EventKind::Cancelled => 3,
        EventKind::TimedOut => 4,
        EventKind::DeadlineMissed => 5,
        EventKind::Refused { .. } => 6,
        EventKind::NotRun => 7,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_labels_are_the_kinds_names() {
        // Every terminal kind's index names it as `EventKind::name` does.
        let kinds = [
            EventKind::Finished { usage: None },
            EventKind::Panicked,
            EventKind::Cancelled,
            EventKind::TimedOut,
            EventKind::DeadlineMissed,
            EventKind::NotRun,
            EventKind::Failed { attempts: 1 },
        ];
        for k in kinds {
            let i = outcome_index(&k).expect("terminal");
            assert_eq!(OUTCOMES[i], k.name());
        }
    }
}
