//! Progress bars for `map` and `imap` (the `progress` feature, with indicatif): done/total, rate and
//! time left, drawn on standard error. Without the feature this is a no-op of zero size.

/// A progress bar over a job's tasks, or nothing.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    #[cfg(feature = "progress")]
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// A bar for `total` tasks if `enabled` (and the feature is on).
    #[cfg_attr(not(feature = "progress"), allow(unused_variables))]
    pub(crate) fn new(total: usize, enabled: bool) -> Progress {
        #[cfg(feature = "progress")]
        {
            let bar = enabled.then(|| {
                let bar = indicatif::ProgressBar::new(total as u64);
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} tasks [{elapsed_precise} < {eta_precise}, {per_sec}]",
                ) {
                    bar.set_style(style);
                }
                bar
            });
            Progress { bar }
        }
        #[cfg(not(feature = "progress"))]
        Progress {}
    }

    /// `tasks` more are done.
    #[cfg_attr(not(feature = "progress"), allow(unused_variables))]
    pub(crate) fn advance(&self, tasks: usize) {
        #[cfg(feature = "progress")]
        if let Some(bar) = &self.bar {
            bar.inc(tasks as u64);
        }
    }

    /// `tasks` more are known to come (an input whose length was not known).
    #[cfg_attr(not(feature = "progress"), allow(unused_variables))]
    pub(crate) fn grow(&self, tasks: usize) {
        #[cfg(feature = "progress")]
        if let Some(bar) = &self.bar {
            bar.inc_length(tasks as u64);
        }
    }

    /// Every task is done.
    pub(crate) fn finish(&self) {
        #[cfg(feature = "progress")]
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
