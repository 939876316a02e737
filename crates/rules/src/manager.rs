//! The rule manager: loads rule files, runs one task per group on the
//! group's slotted schedule, swaps groups on reload keeping alert state.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use pharos_model::sample::now_millis;

use crate::RuleError;
use crate::file::{GroupDef, load_rule_file};
use crate::group::{Group, GroupOptions};

/// Expands `rule_files` patterns (already made absolute or relative to the
/// working directory) and loads every file. Any error fails the whole load,
/// so a reload with a broken file keeps the running rules.
pub fn load_rule_files(patterns: &[String]) -> Result<Vec<GroupDef>, Vec<RuleError>> {
    let mut files = Vec::new();
    for p in patterns {
        match glob::glob(p) {
            Ok(paths) => {
                for path in paths {
                    match path {
                        Ok(path) => files.push(path.to_string_lossy().into_owned()),
                        Err(e) => {
                            return Err(vec![RuleError::plain(
                                p,
                                format!("error reading rule file: {e}"),
                            )]);
                        }
                    }
                }
            }
            Err(e) => {
                return Err(vec![RuleError::plain(
                    p,
                    format!("invalid rule file pattern: {e}"),
                )]);
            }
        }
    }
    files.sort();
    files.dedup();
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match load_rule_file(&f) {
            Ok(rf) => groups.extend(rf.groups),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(errors)
    }
}

struct Running {
    group: Arc<Mutex<Group>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Runs rule groups. Thread-safe; share it in an `Arc`.
pub struct Manager {
    running: Mutex<HashMap<(String, String), Running>>,
    /// Whether groups loaded from now on need no `for`-state restore
    /// (only the first load after start restores).
    restored: Mutex<bool>,
}

impl Default for Manager {
    fn default() -> Self {
        Manager::new()
    }
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("groups", &self.running.lock().len())
            .finish()
    }
}

impl Manager {
    /// A manager with no groups.
    pub fn new() -> Manager {
        Manager {
            running: Mutex::new(HashMap::new()),
            restored: Mutex::new(false),
        }
    }

    /// Replaces the running groups with `defs`. Groups that exist before and
    /// after (same file and name) keep their alerts and series state; groups
    /// that are gone are stopped and their series marked stale. Must be
    /// called inside a Tokio runtime.
    pub async fn update(&self, opts: GroupOptions, defs: Vec<GroupDef>) {
        let should_restore = !*self.restored.lock();
        let mut old = std::mem::take(&mut *self.running.lock());
        let mut new = HashMap::new();
        for def in &defs {
            let mut g = Group::new(def, &opts, should_restore);
            let key = g.key();
            if let Some(prev) = old.remove(&key) {
                let _ = prev.stop.send(true);
                let _ = prev.task.await;
                g.copy_state(&prev.group.lock());
            }
            new.insert(key, start(g, opts.clone()));
        }
        for (_, prev) in old {
            let _ = prev.stop.send(true);
            let _ = prev.task.await;
            let group = prev.group.clone();
            let o = opts.clone();
            let _ = tokio::task::spawn_blocking(move || {
                group.lock().mark_all_stale(now_millis(), &o);
            })
            .await;
        }
        *self.running.lock() = new;
        *self.restored.lock() = true;
    }

    /// Snapshots of every group, sorted by file then name.
    pub fn groups(&self) -> Vec<Group> {
        let running = self.running.lock();
        let mut out: Vec<Group> = running.values().map(|r| r.group.lock().clone()).collect();
        out.sort_by(|a, b| (&a.file, &a.name).cmp(&(&b.file, &b.name)));
        out
    }

    /// Stops every group (without stale markers: a restart resumes them).
    pub async fn stop(&self) {
        let running = std::mem::take(&mut *self.running.lock());
        for (_, r) in running {
            let _ = r.stop.send(true);
            let _ = r.task.await;
        }
    }
}

fn start(g: Group, opts: GroupOptions) -> Running {
    let group = Arc::new(Mutex::new(g));
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(run(group.clone(), opts, rx));
    Running {
        group,
        stop: tx,
        task,
    }
}

/// Sleeps until wall-clock `t` (ms) or until stopped; false when stopped.
async fn sleep_until(t: i64, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    let wait = (t - now_millis()).max(0) as u64;
    tokio::select! {
        _ = tokio::time::sleep(std::time::Duration::from_millis(wait)) => !*stop.borrow(),
        _ = stop.changed() => false,
    }
}

async fn eval_at(group: &Arc<Mutex<Group>>, opts: &GroupOptions, ts: i64) {
    let g = group.clone();
    let o = opts.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || g.lock().eval(ts, &o)).await {
        tracing::error!(err = %e, "rule group evaluation panicked");
    }
}

async fn run(
    group: Arc<Mutex<Group>>,
    opts: GroupOptions,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let (interval, first) = {
        let g = group.lock();
        (g.interval, g.eval_timestamp(now_millis()) + g.interval)
    };
    let mut ts = first;
    if !sleep_until(ts, &mut stop).await {
        return;
    }
    eval_at(&group, &opts, ts).await;
    let mut restore_pending = group.lock().should_restore;
    loop {
        if !sleep_until(ts + interval, &mut stop).await {
            return;
        }
        let missed = ((now_millis() - ts) / interval).max(1);
        ts += missed * interval;
        eval_at(&group, &opts, ts).await;
        if restore_pending {
            // As Prometheus: restore after the second evaluation, when the
            // alerts the expression yields are known.
            let g = group.clone();
            let o = opts.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let mut g = g.lock();
                g.restore_for_state(now_millis(), &o);
                g.should_restore = false;
            })
            .await;
            restore_pending = false;
        }
    }
}
